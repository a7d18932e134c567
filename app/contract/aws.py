"""How the API and the worker configure their boto3 clients: one retry policy and pool size for both.

botocore is imported when a client is made, never at module load (the API's cold start).
"""

from typing import Any

# Standard-mode retries back off with jitter on throttling and transient errors; the pool is
# sized for the API's threadpool and the worker's concurrent jobs.
CLIENT_OPTIONS: dict[str, Any] = {"retries": {"max_attempts": 4, "mode": "standard"}, "max_pool_connections": 32}


def client_config() -> Any:
    """A `botocore.config.Config` with CLIENT_OPTIONS."""
    from botocore.config import Config

    return Config(**CLIENT_OPTIONS)
