"""`python -m workers --api URL --join-token TOKEN ...` (and `berth worker ...`): run a worker.

The parser is built by pydantic-settings from `WorkerConfig`'s fields, so every setting is a flag
with the description as its help and its `BERTH_WORKER_*` variable beside it; there is no second
list of flags to keep in step (only the placeholder each flag's value shows in the help, which
pydantic-settings would spell as the field's type). Flags override variables, which override
defaults. A bad value is reported without its input (one may be the join token) and exits 2.
"""

import argparse
import sys
from typing import Any

from pydantic import ValidationError
from pydantic_settings import CliApp, CliSettingsSource, SettingsError

from workers.config import WorkerConfig
from workers.process import run_worker

PROG = "python -m workers"  # as `berth worker`, the berth CLI names itself
# Shorter names for three flags, kept from the hand-written parser this replaced.
FLAG_ALIASES = {"api-url": "api", "labels": "label", "sandbox-tool-dirs": "sandbox-tool-dir"}
# What each flag's value is, as the help shows it (`--api-url URL`); a flag that takes no value
# (on/off) or one of a few choices (`{sqs,lease}`) shows none here.
PLACEHOLDERS = {
    "api_url": "URL", "join_token": "TOKEN", "name": "NAME", "data_dir": "DIR", "max_concurrent_jobs": "N",
    "labels": "KEY=VALUE", "heartbeat_interval_seconds": "SECONDS", "visibility_seconds": "SECONDS",
    "poll_wait_seconds": "SECONDS", "stop_grace_seconds": "SECONDS", "cancel_grace_seconds": "SECONDS",
    "flush_timeout_seconds": "SECONDS", "retry_max_seconds": "SECONDS", "log_level": "LEVEL",
    "sandbox_tool_dirs": "DIR", "package_cache_dir": "DIR", "package_cache_max_bytes": "BYTES",
    "package_registries": "TYPE=URL", "control_listen": "HOST:PORT", "control_url": "URL",
    "vllm_command": "COMMAND", "model_volume_roots": "DIR",
}


class UnknownArguments(Exception):
    def __init__(self, arguments: list[str], prog: str):
        options = sorted({argument.partition("=")[0] for argument in arguments if argument.startswith("-")})
        described = f"unknown option {', '.join(options)}" if options else "unexpected argument"
        # Values are never quoted back: one may be the join token.
        super().__init__(f"{described} (see {prog} --help)")


def _parse_every_argument(parser: argparse.ArgumentParser, arguments: list[str]) -> argparse.Namespace:
    namespace, unknown = parser.parse_known_args(arguments)
    if unknown:
        raise UnknownArguments(unknown, parser.prog)
    return namespace


def _add_argument(parser: argparse._ActionsContainer, *names: str, **options: Any) -> argparse.Action:
    """argparse's add_argument, with the setting's placeholder in place of its type's name."""
    if "metavar" in options and options.get("dest") in PLACEHOLDERS:
        options["metavar"] = PLACEHOLDERS[options["dest"]]
    return parser.add_argument(*names, **options)


def command_line(prog: str = PROG) -> CliSettingsSource[argparse.ArgumentParser]:
    return CliSettingsSource(
        WorkerConfig,
        cli_prog_name=prog,
        cli_kebab_case=True,
        cli_shortcuts=FLAG_ALIASES,
        cli_implicit_flags=True,  # --control-host-from-ec2-metadata / --no-control-host-from-ec2-metadata
        cli_avoid_json=True,  # --label KEY=VALUE and repeated flags, not JSON, in the help
        cli_hide_none_type=True,
        cli_show_env_vars=True,
        cli_exit_on_error=False,
        parse_args_method=_parse_every_argument,
        add_argument_method=_add_argument,
        formatter_class=argparse.HelpFormatter,  # wraps the description (WorkerConfig's docstring) too
    )


def settings(arguments: list[str], prog: str = PROG) -> WorkerConfig:
    """The settings from these flags over the environment over defaults; UnknownArguments,
    SettingsError or ValidationError when they are not valid."""
    return CliApp.run(WorkerConfig, cli_args=arguments, cli_settings_source=command_line(prog))


def main(argv: list[str] | None = None, prog: str = PROG) -> int:
    """Run a worker from these arguments (the process's own by default); `prog` is the command as
    the user typed it, for the help and the errors."""
    arguments = sys.argv[1:] if argv is None else list(argv)
    if "-h" in arguments or "--help" in arguments:
        print(command_line(prog).root_parser.format_help())
        return 0
    try:
        config = settings(arguments, prog)
    except (UnknownArguments, SettingsError) as exc:
        print(f"invalid arguments: {_without_values(str(exc), arguments)}", file=sys.stderr)
        return 2
    except ValidationError as exc:
        for error in exc.errors(include_input=False, include_url=False):
            field = ".".join(str(part) for part in error["loc"])
            print(f"invalid setting {field}: {error['msg']}", file=sys.stderr)
        return 2
    return run_worker(config)


def _without_values(message: str, arguments: list[str]) -> str:
    """`message` with any value from the command line that it quotes masked (argparse quotes a
    value it cannot use as `'value'`)."""
    for argument in arguments:
        value = argument.partition("=")[2] if argument.startswith("-") else argument
        if value:
            message = message.replace(repr(value), "'***'")
    return message


if __name__ == "__main__":
    sys.exit(main())
