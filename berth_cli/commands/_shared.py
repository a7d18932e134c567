"""What every verb shares: the `--profile` and `--json` options and a client for the profile; and
what the verbs that reach MCP servers share (sandboxes, installations' tools): `NAME=VALUE`
options, tool arguments, the tools table and a call's result."""

import json
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Annotated, Any

import typer

from berth_cli import output
from berth_cli.client import BerthClient
from berth_cli.client.sandboxes import Tool, ToolCallResult
from berth_cli.errors import ExitCode, Outcome
from berth_cli.profiles import DEFAULT_PROFILE, resolve

ProfileOption = Annotated[str, typer.Option(
    "--profile", "-p", envvar="BERTH_PROFILE", show_default=True,
    help="Which saved profile (API URL and key) to use; BERTH_API_URL / BERTH_API_KEY override it.")]
JsonOption = Annotated[bool, typer.Option("--json", help="Print the API's JSON answer instead of a table.")]

ToolArgOption = Annotated[list[str] | None, typer.Option(
    "--arg", "-a", metavar="NAME=VALUE",
    help="An argument; VALUE is read as JSON when it parses, else as a string. Repeatable.")]
ToolArgsJsonOption = Annotated[str | None, typer.Option(
    "--args-json", metavar="JSON", help="All arguments as one JSON object (--arg adds to it).")]

__all__ = ["DEFAULT_PROFILE", "JsonOption", "ProfileOption", "ToolArgOption", "ToolArgsJsonOption", "assignments",
           "connect", "show_tool_call", "tool_arguments", "tools_table"]


@contextmanager
def connect(profile: str) -> Iterator[BerthClient]:
    """A client with the profile's API URL and key (or the environment's)."""
    connection = resolve(profile)
    with BerthClient(connection.api_url, connection.api_key) as client:
        yield client


def assignments(values: list[str], option: str) -> list[tuple[str, str]]:
    pairs = []
    for value in values:
        name, separator, given = value.partition("=")
        if not separator or not name:
            raise typer.BadParameter(f"expected NAME=VALUE, got {value!r}", param_hint=option)
        pairs.append((name, given))
    return pairs


def tools_table(listed: list[Tool]) -> None:
    def arguments(tool: Tool) -> str:
        schema = tool.get("input_schema") or {}
        required = set(schema.get("required") or [])
        return ", ".join(f"{name}{'*' if name in required else ''}: {spec.get('type', 'any')}"
                         for name, spec in (schema.get("properties") or {}).items())

    output.table(["TOOL", "ARGUMENTS", "DESCRIPTION"],
                 ([output.text(t["name"]), output.text(arguments(t)), output.text(t.get("description"))]
                  for t in listed))


def _argument_value(text: str) -> Any:
    """JSON where the text is JSON (`5`, `true`, `{"a": 1}`, `"5"`), else the text itself."""
    try:
        return json.loads(text)
    except ValueError:
        return text


def tool_arguments(arg: list[str] | None, args_json: str | None) -> dict[str, Any]:
    """A call's arguments from `--args-json` and the `--arg`s over it."""
    arguments: dict[str, Any] = {}
    if args_json is not None:
        try:
            arguments = json.loads(args_json)
        except ValueError as error:
            raise typer.BadParameter(f"not JSON: {error}", param_hint="--args-json") from None
        if not isinstance(arguments, dict):
            raise typer.BadParameter("expected a JSON object", param_hint="--args-json")
    arguments.update((name, _argument_value(value)) for name, value in assignments(arg or [], "--arg"))
    return arguments


def show_tool_call(tool: str, answer: ToolCallResult, as_json: bool) -> None:
    """The call's answer; exit code 8 when the tool reported a failure."""
    result = answer["result"]
    if as_json:
        output.print_json(answer)
    elif answer["ok"]:
        _print_result(result)
    if not answer["ok"]:
        raise Outcome(f"{tool} failed: {result.get('error') or 'the tool reported an error'}", ExitCode.TOOL_ERROR)


def _print_result(result: dict[str, Any]) -> None:
    """Text as it is; other content (images, resources) summarised; structured content as JSON
    when there is no text."""
    blocks = result.get("content") or []
    for block in blocks:
        if block.get("type") == "text":
            output.stdout.print(block.get("text", ""), markup=False, highlight=False)
        elif block.get("type") in ("image", "audio"):
            output.stdout.print(f"[{block['type']} {block.get('mimeType', '')}, {len(block.get('data', ''))} "
                                f"base64 characters]", markup=False)
        else:
            output.print_json(block)
    if not any(block.get("type") == "text" for block in blocks) and "structuredContent" in result:
        output.print_json(result["structuredContent"])
