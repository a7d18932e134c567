"""`berth mcp config|sync`: berth's own MCP endpoint (`/mcp`) in an MCP client's configuration."""

import json
from typing import Annotated, Literal

import typer

from berth_cli import output
from berth_cli.commands._shared import DEFAULT_PROFILE, JsonOption, ProfileOption, connect
from berth_cli.profiles import resolve

app = typer.Typer(no_args_is_help=True, help="berth's MCP endpoint (/mcp) for MCP clients.")

InstanceOption = Annotated[str | None, typer.Option(
    "--instance", help="The integrating product's instance (default: `default`).")]
Shape = Literal["mcp-servers", "vscode", "url"]


@app.command()
def config(
    shape: Annotated[Shape, typer.Option("--shape", help=(
        "mcp-servers: an `mcpServers` map (Claude, Cursor, Windsurf); vscode: VS Code's `servers`; "
        "url: the URL and the header."))] = "mcp-servers",
    instance: InstanceOption = None,
    show_key: Annotated[bool, typer.Option("--show-key", help=(
        "Put the profile's API key in place of ${BERTH_API_KEY} (the output then holds a secret)."))] = False,
    profile: ProfileOption = DEFAULT_PROFILE,
    as_json: JsonOption = False,
) -> None:
    """Print the MCP client configuration for berth's /mcp, ready to paste into a client's file."""
    with connect(profile) as client:
        answer = client.integrations.client_config(instance)
    if as_json:
        output.print_json(answer)
        return
    shown = {"mcp-servers": {"mcpServers": answer["mcpServers"]}, "vscode": {"servers": answer["servers"]},
             "url": None}[shape]
    if show_key:
        key = resolve(profile).api_key
        answer = json.loads(json.dumps(answer).replace("${BERTH_API_KEY}", key))
        shown = json.loads(json.dumps(shown).replace("${BERTH_API_KEY}", key)) if shown else None
    if shown is None:
        output.stdout.out(f"{answer['url']}\n{answer['header']['name']}: {answer['header']['value']}",
                          highlight=False)
    else:
        output.print_json(shown)
    if not show_key:
        output.note("Set BERTH_API_KEY to an API key of the workspace, or run again with --show-key.")


@app.command()
def sync(
    instance: InstanceOption = None,
    client_name: Annotated[str | None, typer.Option("--client", help="What the instance is (name, version).")] = None,
    profile: ProfileOption = DEFAULT_PROFILE,
    as_json: JsonOption = False,
) -> None:
    """Tell berth an instance synced its MCP configuration (shown as its last sync)."""
    with connect(profile) as client:
        answer = client.integrations.sync(instance, client_name)
    if as_json:
        output.print_json(answer)
        return
    synced = answer["last_sync"]
    output.stdout.print(f"instance {output.text(answer['instance_id'])}: sync {synced['syncs']} recorded at "
                        f"{output.moment(synced['at'])}")
