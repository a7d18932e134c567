"""What every verb shares: the `--profile` and `--json` options and a client for the profile."""

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Annotated

import typer

from berth_cli.client import BerthClient
from berth_cli.profiles import DEFAULT_PROFILE, resolve

ProfileOption = Annotated[str, typer.Option(
    "--profile", "-p", envvar="BERTH_PROFILE", show_default=True,
    help="Which saved profile (API URL and key) to use; BERTH_API_URL / BERTH_API_KEY override it.")]
JsonOption = Annotated[bool, typer.Option("--json", help="Print the API's JSON answer instead of a table.")]

__all__ = ["DEFAULT_PROFILE", "JsonOption", "ProfileOption", "connect"]


@contextmanager
def connect(profile: str) -> Iterator[BerthClient]:
    """A client with the profile's API URL and key (or the environment's)."""
    connection = resolve(profile)
    with BerthClient(connection.api_url, connection.api_key) as client:
        yield client
