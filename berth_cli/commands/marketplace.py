"""`berth marketplace search|show|refresh`: MCP servers from the curated catalog and the MCP
registries berth reads."""

from typing import Annotated

import typer

from berth_cli import output
from berth_cli.client.marketplace import MarketplaceToolDetail, MarketplaceToolPage
from berth_cli.commands._shared import DEFAULT_PROFILE, JsonOption, ProfileOption, connect
from berth_cli.errors import ExitCode, Outcome

app = typer.Typer(no_args_is_help=True, help="The marketplace: MCP servers to install.")

EntryArgument = Annotated[str, typer.Argument(metavar="ID", help="An entry's id, e.g. io.github.owner/server.")]


@app.command()
def search(
    text: Annotated[str | None, typer.Argument(metavar="[WORDS]", help="Words that must all appear.")] = None,
    registry_type: Annotated[str | None, typer.Option("--type", help="Only entries with a package of this "
                                                                      "registry type (npm, pypi, oci, ...).")] = None,
    transport: Annotated[str | None, typer.Option("--transport", help="stdio, streamable-http or sse.")] = None,
    tag: Annotated[list[str] | None, typer.Option("--tag", help="Only entries with this tag; repeatable.")] = None,
    limit: Annotated[int, typer.Option("--limit", min=1, max=100, help="Entries per page.")] = 20,
    cursor: Annotated[str | None, typer.Option("--cursor", help="Continue from a previous page's cursor.")] = None,
    all_pages: Annotated[bool, typer.Option("--all", help="Follow the cursor through every page.")] = False,
    profile: ProfileOption = DEFAULT_PROFILE,
    as_json: JsonOption = False,
) -> None:
    """Search the marketplace, by name."""
    with connect(profile) as client:
        page = client.marketplace.search(text, registry_type=registry_type, transport=transport, tags=tag,
                                         limit=limit, cursor=cursor)
        while all_pages and page["next_cursor"]:
            following = client.marketplace.search(text, registry_type=registry_type, transport=transport, tags=tag,
                                                  limit=limit, cursor=page["next_cursor"])
            page = MarketplaceToolPage(success=True, tools=page["tools"] + following["tools"],
                                       next_cursor=following["next_cursor"])
    if as_json:
        output.print_json(page)
        return
    output.table(["ID", "VERSION", "INSTALLS AS", "ORIGIN", "DESCRIPTION"], (
        [output.text(tool["id"]), output.text(tool["version"]),
         output.text(tool["install_kind"] or "-") + (" (per user)" if tool["per_user"] else ""),
         output.text(tool["origin"]), output.text(tool["description"])]
        for tool in page["tools"]))
    if not page["tools"]:
        output.note("nothing found")
    if page["next_cursor"]:
        output.note(f"more: --cursor {page['next_cursor']} (or --all)")


@app.command()
def show(entry_id: EntryArgument, profile: ProfileOption = DEFAULT_PROFILE, as_json: JsonOption = False) -> None:
    """One entry: what it is, where it came from, and what installing it takes."""
    with connect(profile) as client:
        tool = client.marketplace.get(entry_id)
    if as_json:
        output.print_json(tool)
        return
    _show(tool)


def _show(tool: MarketplaceToolDetail) -> None:
    installs = tool["install_kind"] or f"not installable: {tool['not_installable']}"
    output.fields([
        ("id", output.text(tool["id"])),
        ("title", output.text(tool["title"])),
        ("description", output.text(tool["description"])),
        ("version", output.text(tool["version"]) + f" (seen: {output.text(', '.join(tool['versions']))})"),
        ("origin", output.text(tool["origin"])),
        ("installs as", output.text(installs) + (" for each user" if tool["per_user"] else "")),
        ("transports", output.text(", ".join(tool["transports"]))),
        ("tags", output.text(", ".join(tool["tags"]))),
        ("repository", output.text(tool.get("repository_url"))),
    ])
    if tool["inputs"]:
        output.table(["SETTING", "KIND", "REQUIRED", "SECRET", "DEFAULT", "DESCRIPTION"], (
            [output.text(spec["name"]), output.text(spec["kind"]), "yes" if spec["required"] else "",
             "yes" if spec["secret"] else "", output.text(spec["default"]), output.text(spec["description"])]
            for spec in tool["inputs"]), title="berth install ID --set SETTING=VALUE")


@app.command()
def refresh(profile: ProfileOption = DEFAULT_PROFILE, as_json: JsonOption = False) -> None:
    """Read the MCP registries berth is configured with again (an admin key or a signed-in user).
    Exit code 1 when a registry failed: what berth had from it is kept."""
    with connect(profile) as client:
        result = client.marketplace.refresh()
    if as_json:
        output.print_json(result)
    else:
        output.table(["REGISTRY", "RESULT", "ENTRIES", "ADDED", "UPDATED", "REMOVED", "INVALID"], (
            [output.text(report["url"]), "[green]ok[/]" if report["ok"] else f"[red]{output.text(report['error'])}[/]",
             str(report["entries"]), str(report["added"]), str(report["updated"]), str(report["removed"]),
             str(report["invalid_count"])]
            for report in result["registries"]))
        output.note(f"{result['entries']} entries in the marketplace ({result['seconds']:.1f} s)")
    if result["failed"]:
        raise Outcome(f"registries failed (what berth had from them is kept): {', '.join(result['failed'])}",
                      ExitCode.API_ERROR)
