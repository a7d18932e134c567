"""`berth tools list|call INSTALLATION`: the tools of an installation's server (started when none
runs; a first start installs its package, which can take a while)."""

import time
from typing import Annotated

import typer

from berth_cli import output
from berth_cli.client import BerthClient
from berth_cli.client.sandboxes import MAX_WAIT_SECONDS, ToolList
from berth_cli.commands._shared import (
    DEFAULT_PROFILE,
    JsonOption,
    ProfileOption,
    ToolArgOption,
    ToolArgsJsonOption,
    connect,
    show_tool_call,
    tool_arguments,
    tools_table,
)
from berth_cli.errors import ApiError, ExitCode, Outcome

app = typer.Typer(no_args_is_help=True, help="Tools of installed MCP servers.")

InstallationArgument = Annotated[str, typer.Argument(metavar="INSTALLATION", help="An installation id (ins_...).")]
WaitOption = Annotated[float, typer.Option("--wait", min=0, help="Seconds to wait for a server that is starting "
                                                                  "(a first start installs its package).")]


def _tools_once_started(client: BerthClient, installation_id: str, wait: float) -> ToolList:
    """The tools, asking again (each answer waits at most 25 s) while the server is still starting."""
    deadline = time.monotonic() + wait
    while True:
        left = max(deadline - time.monotonic(), 0)
        try:
            return client.installations.tools(installation_id, wait_seconds=round(min(left, MAX_WAIT_SECONDS), 1))
        except ApiError as error:
            if error.status != 409 or "starting" not in error.message or time.monotonic() >= deadline:
                raise
        time.sleep(0.5)


@app.command("list")
def list_tools(installation_id: InstallationArgument, wait: WaitOption = 300,
               profile: ProfileOption = DEFAULT_PROFILE, as_json: JsonOption = False) -> None:
    """The server's tools, with their arguments (* = required)."""
    with connect(profile) as client:
        try:
            listed = _tools_once_started(client, installation_id, wait)
        except ApiError as error:
            if error.status == 409 and "starting" in error.message:
                raise Outcome(f"the server did not start within {wait:g} s: {error.message}",
                              ExitCode.NOT_STARTED) from error
            raise
    if as_json:
        output.print_json(listed)
        return
    tools_table(listed["tools"])


@app.command()
def call(
    installation_id: InstallationArgument,
    tool: Annotated[str, typer.Argument(metavar="TOOL", help="The tool's name.")],
    arg: ToolArgOption = None,
    args_json: ToolArgsJsonOption = None,
    wait: WaitOption = 300,
    profile: ProfileOption = DEFAULT_PROFILE,
    as_json: JsonOption = False,
) -> None:
    """Call a tool (starting the server first when none runs). Exit code 8 when the tool reports a failure."""
    arguments = tool_arguments(arg, args_json)
    with connect(profile) as client:
        _tools_once_started(client, installation_id, wait)  # a server that runs answers at once
        answer = client.installations.call(installation_id, tool, arguments)
    show_tool_call(tool, answer, as_json)
