"""`berth install ID --set NAME=VALUE`, `berth installations list|get|set|upload|delete`: marketplace
entries installed for the workspace (or for you, when an entry is per-user)."""

import sys
from pathlib import Path
from typing import Annotated, Literal

import typer

from berth_cli import output
from berth_cli.client.installations import Installation
from berth_cli.commands._shared import DEFAULT_PROFILE, JsonOption, ProfileOption, assignments, connect

app = typer.Typer(no_args_is_help=True, help="Installations: marketplace entries set up to use.")
install_app = typer.Typer()  # `berth install`, a verb on the root

InstallationArgument = Annotated[str, typer.Argument(metavar="INSTALLATION", help="An installation id (ins_...).")]
SetOption = Annotated[list[str] | None, typer.Option(
    "--set", "-s", metavar="NAME=VALUE", help="A setting (see `berth marketplace show ID`); repeatable.")]
SecretStdinOption = Annotated[str | None, typer.Option(
    "--secret-stdin", metavar="NAME", help="Read this setting's value from the first line of stdin (keeps a secret "
                                           "out of the shell's history and of `ps`).")]


def _settings(values: list[str] | None, secret_stdin: str | None) -> dict[str, str]:
    settings = dict(assignments(values or [], "--set"))
    if secret_stdin:
        settings[secret_stdin] = sys.stdin.readline().rstrip("\n")
    return settings


@install_app.command()
def install(
    entry_id: Annotated[str, typer.Argument(metavar="ID", help="A marketplace entry's id.")],
    values: SetOption = None,
    secret_stdin: SecretStdinOption = None,
    kind: Annotated[Literal["package", "remote"] | None, typer.Option(
        "--kind", help="Insist on its package or its remote, when it offers both.")] = None,
    profile: ProfileOption = DEFAULT_PROFILE,
    as_json: JsonOption = False,
) -> None:
    """Install a marketplace entry. Secret values are stored sealed and never shown again."""
    with connect(profile) as client:
        installation = client.marketplace.install(entry_id, _settings(values, secret_stdin), kind=kind)
    if as_json:
        output.print_json(installation)
        return
    output.stdout.print(f"installation {output.text(installation['id'])} of {output.text(installation['entry_id'])} "
                        f"({output.status(installation['state'])})")
    output.note(installation["next"])


@app.command("list")
def list_installations(
    user_id: Annotated[str | None, typer.Option("--user", help="Only this user's.")] = None,
    limit: Annotated[int, typer.Option("--limit", min=1, max=200, help="Installations per page.")] = 50,
    cursor: Annotated[str | None, typer.Option("--cursor", help="Continue from a previous page's cursor.")] = None,
    profile: ProfileOption = DEFAULT_PROFILE,
    as_json: JsonOption = False,
) -> None:
    """The workspace's installations, newest first."""
    with connect(profile) as client:
        page = client.installations.page(user_id=user_id, limit=limit, cursor=cursor)
    if as_json:
        output.print_json(page)
        return
    output.table(["INSTALLATION", "ENTRY", "KIND", "STATE", "FOR", "SERVER", "CREATED"], (
        [output.text(found["id"]), output.text(found["entry_id"]), output.text(found["kind"]),
         output.status(found["state"]), output.text(found["user_id"] or "workspace"),
         output.text(found["sandbox_id"] or "-"), output.moment(found["created_at"])]
        for found in page["installations"]))
    if not page["installations"]:
        output.note("no installations")
    if page["next_cursor"]:
        output.note(f"more: --cursor {page['next_cursor']}")


@app.command()
def get(installation_id: InstallationArgument, profile: ProfileOption = DEFAULT_PROFILE,
        as_json: JsonOption = False) -> None:
    """One installation: its settings (secrets as hints), files and server."""
    with connect(profile) as client:
        installation = client.installations.get(installation_id)
    if as_json:
        output.print_json(installation)
        return
    _show(installation)


def _show(installation: Installation) -> None:
    output.fields([
        ("installation", output.text(installation["id"])),
        ("entry", f"{output.text(installation['entry_id'])} {output.text(installation['entry_version'])} "
                  f"({output.text(installation['origin'])})"),
        ("kind", output.text(installation["kind"])),
        ("for", output.text(installation["user_id"] or "the workspace")),
        ("state", output.status(installation["state"])),
        ("next", output.text(installation["next"])),
        ("settings", output.text(", ".join(f"{name}={value}" for name, value in installation["config"].items()))),
        ("secrets", output.text(", ".join(f"{s['name']} ({s['hint']})" for s in installation["secrets"]))),
        ("files", output.text(", ".join(f"{file['path']} ({output.size(file['size_bytes'])})"
                                        for file in installation["files"]))),
        ("server", output.text(installation["sandbox_id"] or "none running")),
        ("last error", f"[red]{output.text(installation['last_error'])}[/]" if installation["last_error"] else ""),
    ])


@app.command("set")
def set_values(
    installation_id: InstallationArgument,
    values: SetOption = None,
    secret_stdin: SecretStdinOption = None,
    unset: Annotated[list[str] | None, typer.Option("--unset", metavar="NAME", help="Remove a setting.")] = None,
    profile: ProfileOption = DEFAULT_PROFILE,
    as_json: JsonOption = False,
) -> None:
    """Change settings; a running server restarts with them."""
    changes: dict[str, str | None] = {**_settings(values, secret_stdin), **{name: None for name in unset or []}}
    if not changes:
        raise typer.BadParameter("give --set, --secret-stdin or --unset", param_hint="--set")
    with connect(profile) as client:
        changed = client.installations.update(installation_id, changes)
    if as_json:
        output.print_json(changed)
        return
    output.stdout.print(f"installation {output.text(installation_id)} changed"
                        + ("; its server restarted" if changed["restarted"] else ""))


@app.command()
def upload(
    installation_id: InstallationArgument,
    paths: Annotated[list[Path], typer.Argument(metavar="FILE...", exists=True, dir_okay=False, readable=True,
                                                help="Files for its server, read-only under /sandbox/files.")],
    profile: ProfileOption = DEFAULT_PROFILE,
    as_json: JsonOption = False,
) -> None:
    """Give the installation's server files; a running server restarts to see them."""
    with connect(profile) as client:
        changed = client.installations.upload(installation_id, paths)
    if as_json:
        output.print_json(changed)
        return
    for file in changed["files"]:
        output.stdout.print(f"{output.text(file['path'])}  {output.size(file['size_bytes'])}")


@app.command()
def delete(installation_id: InstallationArgument, profile: ProfileOption = DEFAULT_PROFILE,
           as_json: JsonOption = False) -> None:
    """Remove an installation: its server stops, its files and secret values go with it."""
    with connect(profile) as client:
        result = client.installations.delete(installation_id)
    if as_json:
        output.print_json(result)
    else:
        output.stdout.print(f"installation {output.text(installation_id)} deleted")
