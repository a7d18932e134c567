"""A typed client of berth's HTTP API: one small class per group of routes, one method per
route, composed in `BerthClient`. The CLI talks to berth through this alone.

A new group of routes is a module here with its class (and TypedDicts for the answers it
reads), and one attribute below.
"""

from types import TracebackType

import httpx

from berth_cli.client.accounts import AccountsApi
from berth_cli.client.http import Http
from berth_cli.client.infra_ssh import SshApi
from berth_cli.client.installations import InstallationsApi
from berth_cli.client.integrations import IntegrationsApi
from berth_cli.client.jobs import JobsApi
from berth_cli.client.marketplace import MarketplaceApi
from berth_cli.client.models import ModelsApi
from berth_cli.client.runtimes import RuntimesApi
from berth_cli.client.sandboxes import SandboxesApi
from berth_cli.client.shared_tools import SharedToolsApi


class BerthClient:
    def __init__(self, api_url: str, credential: str | None = None, *, timeout: float = 30.0,
                 transport: httpx.BaseTransport | None = None):
        """`credential` is an API key or a session token (both travel as a bearer token)."""
        self.http = Http(api_url, credential, timeout=timeout, transport=transport)
        self.accounts = AccountsApi(self.http)
        self.jobs = JobsApi(self.http)
        self.models = ModelsApi(self.http)
        self.runtimes = RuntimesApi(self.http)
        self.sandboxes = SandboxesApi(self.http)
        self.marketplace = MarketplaceApi(self.http)
        self.installations = InstallationsApi(self.http)
        self.integrations = IntegrationsApi(self.http)
        self.shared_tools = SharedToolsApi(self.http)
        self.ssh = SshApi(self.http)

    def close(self) -> None:
        self.http.close()

    def __enter__(self) -> "BerthClient":
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 traceback: TracebackType | None) -> None:
        self.close()
