"""`python -m workers --api URL --join-token TOKEN ...`: the worker without the `berth` CLI.

Flags override `BERTH_WORKER_*` environment variables; a flag left out leaves the variable (or
the default) in force. Prefer BERTH_WORKER_JOIN_TOKEN to --join-token on shared hosts, where
other users can read command lines.
"""

import argparse
import sys

from pydantic import ValidationError

from workers.config import WorkerConfig
from workers.runner import run_worker


def _label(text: str) -> tuple[str, str]:
    key, separator, value = text.partition("=")
    if not separator or not key:
        raise argparse.ArgumentTypeError(f"expected key=value, got {text!r}")
    return key, value


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m workers", description="Run a berth runtime worker.")
    parser.add_argument("--api", dest="api_url", help="base URL of the berth API")
    parser.add_argument("--join-token", help="workspace join token (needed only for the first registration)")
    parser.add_argument("--name", help="runtime name shown in the workspace (default: host name)")
    parser.add_argument("--data-dir", help="registration, spool and job work directories")
    parser.add_argument("--max-concurrent-jobs", type=int)
    parser.add_argument("--queue-mode", choices=["sqs", "lease"], help="read SQS directly, or lease through the API")
    parser.add_argument("--label", dest="labels", type=_label, action="append", help="key=value, repeatable")
    parser.add_argument("--heartbeat-interval-seconds", type=int)
    parser.add_argument("--visibility-seconds", type=int)
    parser.add_argument("--poll-wait-seconds", type=int)
    parser.add_argument("--stop-grace-seconds", type=float)
    parser.add_argument("--log-level")
    parser.add_argument("--sandbox-tool-dir", dest="sandbox_tool_dirs", action="append",
                        help="host directory visible read-only in every sandbox, repeatable")
    parser.add_argument("--allow-unisolated-sandboxes", action="store_true", default=None,
                        help="without bubblewrap, run sandboxes with rlimits only (otherwise they are refused)")
    parser.add_argument("--control-listen", metavar="HOST:PORT",
                        help="serve control requests directly from the API on this address (port 0: any free one)")
    parser.add_argument("--control-url", metavar="URL",
                        help="the URL the API should use for --control-listen (default: http://HOST:PORT as bound)")
    parser.add_argument("--control-host-from-ec2-metadata", action="store_true", default=None,
                        help="advertise this EC2 instance's private address (IMDSv2) with the bound port")
    return parser


def main(argv: list[str] | None = None) -> int:
    arguments = vars(_parser().parse_args(argv))
    given = {name: value for name, value in arguments.items() if value is not None}
    if "labels" in given:
        given["labels"] = dict(given["labels"])
    try:
        config = WorkerConfig(**given)
    except ValidationError as exc:
        # Inputs left out of the message: one of them may be the join token.
        for error in exc.errors(include_input=False, include_url=False):
            field = ".".join(str(part) for part in error["loc"])
            print(f"invalid setting {field}: {error['msg']}", file=sys.stderr)
        return 2
    return run_worker(config)


if __name__ == "__main__":
    sys.exit(main())
