"""`berth shared-tools list|connect|status|disconnect`: tools each user connects with their own
account (OAuth). With a workspace API key, `--user` names the user (the integrating product's)."""

import webbrowser
from typing import Annotated

import typer

from berth_cli import output
from berth_cli.commands._shared import DEFAULT_PROFILE, JsonOption, ProfileOption, connect

app = typer.Typer(no_args_is_help=True, help="Shared tools: each user connects their own account (OAuth).")

ToolArgument = Annotated[str, typer.Argument(metavar="TOOL", help="A shared tool's id (io.github.owner/server).")]
UserOption = Annotated[str | None, typer.Option(
    "--user", help="The user to act for (X-User-Id); default: the key's own user.")]


@app.command("list")
def list_tools(user: UserOption = None, profile: ProfileOption = DEFAULT_PROFILE, as_json: JsonOption = False
               ) -> None:
    """The shared tools, and whether the user has connected each."""
    with connect(profile) as client:
        answer = client.shared_tools.list(user)
    if as_json:
        output.print_json(answer)
        return
    output.table(["TOOL", "CLIENT", "CONNECTED", "EXPIRES", "TITLE"], [
        (output.text(tool["id"]), "registered" if tool["client_registered"] else "[dim]none[/]",
         output.status("ok") if tool["connection"]["connected"] else "no",
         output.moment(tool["connection"]["expires_at"]), output.text(tool["title"]))
        for tool in answer["shared_tools"]], title=f"shared tools of {answer['user_id']}")


@app.command("connect")
def connect_tool(
    tool: ToolArgument,
    user: UserOption = None,
    open_browser: Annotated[bool, typer.Option("--open", help="Open the link in a browser too.")] = False,
    profile: ProfileOption = DEFAULT_PROFILE,
    as_json: JsonOption = False,
) -> None:
    """Print the link the user signs in with (once, within minutes); berth keeps the grant."""
    with connect(profile) as client:
        link = client.shared_tools.begin(tool, user)
    if open_browser:
        webbrowser.open(link["authorization_url"])
    if as_json:
        output.print_json(link)
        return
    output.note(f"{link['user_id']} signs in to connect {link['tool_id']} at (until "
                f"{output.moment(link['expires_at'])}):")
    output.stdout.out(link["authorization_url"], highlight=False)


@app.command()
def status(tool: ToolArgument, user: UserOption = None, profile: ProfileOption = DEFAULT_PROFILE,
           as_json: JsonOption = False) -> None:
    """Whether the user has connected the tool, and until when the grant's token works."""
    with connect(profile) as client:
        answer = client.shared_tools.status(tool, user)
    if as_json:
        output.print_json(answer)
        return
    output.fields([
        ("tool", output.text(answer["tool_id"])), ("user", output.text(answer["user_id"])),
        ("connected", "yes" if answer["connected"] else "no"),
        ("expired", "" if answer["expired"] is None else ("yes" if answer["expired"] else "no")),
        ("scopes", output.text(" ".join(answer["scopes"]))), ("connected at", output.moment(answer["connected_at"])),
        ("refreshed at", output.moment(answer["refreshed_at"])), ("expires at", output.moment(answer["expires_at"])),
    ])


@app.command()
def disconnect(tool: ToolArgument, user: UserOption = None, profile: ProfileOption = DEFAULT_PROFILE,
               as_json: JsonOption = False) -> None:
    """Forget the user's grant (revoked at the provider where it can be)."""
    with connect(profile) as client:
        answer = client.shared_tools.disconnect(tool, user)
    if as_json:
        output.print_json(answer)
        return
    output.stdout.print(f"{output.text(answer['tool_id'])} disconnected for {output.text(answer['user_id'])}: "
                        f"{output.text(answer['detail'])}")
