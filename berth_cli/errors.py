"""What can go wrong in the CLI, each with the exit code that says so (README, "CLI").

Commands raise these; the root command group (`berth_cli.app`) prints the message to stderr and
exits with the code, so no command formats an error or picks an exit code of its own.
"""

from enum import IntEnum


class ExitCode(IntEnum):
    OK = 0
    API_ERROR = 1  # berth answered with an error (its message, status and request id are shown)
    USAGE = 2  # a bad option or argument (typer's own code for these)
    NOT_CONFIGURED = 3  # no profile, no API URL or no key: `berth login` first
    UNREACHABLE = 4  # the API could not be reached (the URL is shown)
    JOB_ERROR = 5  # a followed job ended in `error`
    JOB_CANCELLED = 6  # ... in `cancelled`
    JOB_EXPIRED = 7  # ... in `expired`
    TOOL_ERROR = 8  # a tool call answered, but the tool reported a failure
    NOT_STARTED = 9  # `sandboxes create --wait`: the server failed, ended or did not start in time
    INTERRUPTED = 130  # Ctrl-C (what a shell reports for SIGINT)


class CliError(Exception):
    exit_code = ExitCode.API_ERROR

    def __init__(self, message: str):
        super().__init__(message)
        self.message = message


class ApiError(CliError):
    """An answer with a non-2xx status: berth's `error` text, its status and request id."""

    exit_code = ExitCode.API_ERROR

    def __init__(self, status: int, message: str, request_id: str | None, method: str, url: str):
        super().__init__(message)
        self.status = status
        self.request_id = request_id
        self.method = method
        self.url = url

    def __str__(self) -> str:
        request = f", request {self.request_id}" if self.request_id else ""
        return f"{self.message} (HTTP {self.status} on {self.method} {self.url}{request})"


class Unreachable(CliError):
    exit_code = ExitCode.UNREACHABLE

    def __init__(self, url: str, reason: str):
        super().__init__(f"could not reach the berth API at {url}: {reason}")
        self.url = url


class NotConfigured(CliError):
    exit_code = ExitCode.NOT_CONFIGURED


class ProfileFileError(NotConfigured):
    """The profile file exists but cannot be read as one."""


class Outcome(CliError):
    """Not a failure of the CLI: what it watched ended badly (a job, a tool call, a start)."""

    def __init__(self, message: str, exit_code: ExitCode):
        super().__init__(message)
        self.exit_code = exit_code
