"""The `berth` command: the root group, its `--version`, and the verb groups mounted on it."""

from typing import Annotated, Any

import typer
from typer.core import TyperGroup

from berth_cli import output
from berth_cli.client.http import cli_version
from berth_cli.commands import (
    admin,
    auth,
    installations,
    jobs,
    local,
    marketplace,
    mcp,
    models,
    runtimes,
    sandboxes,
    shared_tools,
    ssh,
    tools,
)
from berth_cli.errors import CliError, ExitCode


class BerthGroup(TyperGroup):
    """Turns every `CliError` a verb raises into its message on stderr and its exit code, so
    that no verb formats errors or picks exit codes itself (berth_cli.errors)."""

    def invoke(self, ctx: Any) -> Any:
        try:
            return super().invoke(ctx)
        except CliError as error:
            output.show_error(error)
            raise typer.Exit(error.exit_code) from None
        except KeyboardInterrupt:
            output.note("interrupted")
            raise typer.Exit(ExitCode.INTERRUPTED) from None


cli = typer.Typer(cls=BerthGroup, add_completion=False, no_args_is_help=True, rich_markup_mode="markdown",
                  help="berth: MCP sandboxes and model serving. A client of berth's HTTP API, and the local stack.")


def _print_version(value: bool) -> None:
    if value:
        output.stdout.print(f"berth {cli_version()}")
        raise typer.Exit()


@cli.callback()
def root(version: Annotated[bool, typer.Option(
        "--version", callback=_print_version, is_eager=True, help="Print the version and exit.")] = False) -> None:
    """berth: MCP sandboxes and model serving. A client of berth's HTTP API, and the local stack."""


# Verbs on the root: `berth up`, `berth worker`, `berth login`, `berth logout`, `berth whoami`, `berth install`.
cli.add_typer(local.app)
cli.add_typer(auth.app)
cli.add_typer(installations.install_app)  # `berth install ID`
# One group per resource, one module each: a later issue adds its line here.
cli.add_typer(jobs.app, name="jobs")
cli.add_typer(sandboxes.app, name="sandboxes")
cli.add_typer(models.app, name="models")
cli.add_typer(runtimes.app, name="runtimes")
cli.add_typer(runtimes.join_tokens, name="join-tokens")
cli.add_typer(admin.app, name="admin")
cli.add_typer(marketplace.app, name="marketplace")
cli.add_typer(installations.app, name="installations")
cli.add_typer(tools.app, name="tools")
cli.add_typer(mcp.app, name="mcp")
cli.add_typer(shared_tools.app, name="shared-tools")
cli.add_typer(ssh.app, name="ssh")
