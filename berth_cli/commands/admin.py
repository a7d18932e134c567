"""`berth admin grant-operator|revoke-operator EMAIL`: out-of-band changes the public API never
makes. They talk to berth's table directly with the caller's AWS credentials (the standard AWS
environment, and BERTH_TABLE_NAME for the table), so only whoever runs the deployment can use
them; like `berth up`, they import berth's own code, and only when run."""

from typing import Annotated, Literal

import typer

from berth_cli import output
from berth_cli.errors import CliError

app = typer.Typer(no_args_is_help=True, help="Out-of-band administration with AWS credentials (not the HTTP API).")

EmailArgument = Annotated[str, typer.Argument(metavar="EMAIL", help="The account's address.")]


def _set_grant(email: str, grant: Literal["granted", "revoked"]) -> None:
    from app.composition import services
    from app.errors import BerthError

    try:
        services().accounts.set_operator_grant(email, grant)
    except BerthError as error:
        raise CliError(error.message) from None


@app.command("grant-operator")
def grant_operator(email: EmailArgument) -> None:
    """Make the account of EMAIL the platform operator (it may mint shared join tokens and delete
    shared runtimes), whatever BERTH_OPERATOR_EMAILS says."""
    _set_grant(email, "granted")
    output.stdout.print(f"{output.text(email.lower())} is the platform operator from its next request on")


@app.command("revoke-operator")
def revoke_operator(email: EmailArgument) -> None:
    """Take operator rights from the account of EMAIL, whatever BERTH_OPERATOR_EMAILS says; its
    sessions and keys lose them on their next request, and its shared join tokens stop working."""
    _set_grant(email, "revoked")
    output.stdout.print(f"{output.text(email.lower())} is not the platform operator from its next request on")
