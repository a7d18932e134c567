"""`python -m workers --api URL --join-token TOKEN ...` (and `berth worker ...`): run a worker.

The parser is built by pydantic-settings from `WorkerConfig`'s fields, so every setting is a flag
with the description as its help and its `BERTH_WORKER_*` variable beside it; there is no second
list of flags to keep in step. Flags override variables, which override defaults. A bad value is
reported without its input (one may be the join token) and exits 2.
"""

import argparse
import sys

from pydantic import ValidationError
from pydantic_settings import CliApp, CliSettingsSource, SettingsError

from workers.config import WorkerConfig
from workers.process import run_worker

PROG = "python -m workers"
# Shorter names for three flags, kept from the hand-written parser this replaced.
FLAG_ALIASES = {"api-url": "api", "labels": "label", "sandbox-tool-dirs": "sandbox-tool-dir"}


class UnknownArguments(Exception):
    def __init__(self, arguments: list[str]):
        options = sorted({argument.partition("=")[0] for argument in arguments if argument.startswith("-")})
        described = f"unknown option {', '.join(options)}" if options else "unexpected argument"
        # Values are never quoted back: one may be the join token.
        super().__init__(f"{described} (see {PROG} --help)")


def _parse_every_argument(parser: argparse.ArgumentParser, arguments: list[str]) -> argparse.Namespace:
    namespace, unknown = parser.parse_known_args(arguments)
    if unknown:
        raise UnknownArguments(unknown)
    return namespace


def command_line() -> CliSettingsSource[argparse.ArgumentParser]:
    return CliSettingsSource(
        WorkerConfig,
        cli_prog_name=PROG,
        cli_kebab_case=True,
        cli_shortcuts=FLAG_ALIASES,
        cli_implicit_flags=True,  # --control-host-from-ec2-metadata / --no-control-host-from-ec2-metadata
        cli_avoid_json=True,  # --label KEY=VALUE and repeated flags, not JSON, in the help
        cli_hide_none_type=True,
        cli_show_env_vars=True,
        cli_exit_on_error=False,
        parse_args_method=_parse_every_argument,
        formatter_class=argparse.HelpFormatter,  # wraps the description (WorkerConfig's docstring) too
    )


def settings(arguments: list[str]) -> WorkerConfig:
    """The settings from these flags over the environment over defaults; UnknownArguments,
    SettingsError or ValidationError when they are not valid."""
    return CliApp.run(WorkerConfig, cli_args=arguments, cli_settings_source=command_line())


def main(argv: list[str] | None = None) -> int:
    arguments = sys.argv[1:] if argv is None else list(argv)
    if "-h" in arguments or "--help" in arguments:
        print(command_line().root_parser.format_help())
        return 0
    try:
        config = settings(arguments)
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
