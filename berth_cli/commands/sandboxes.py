"""`berth sandboxes create|list|get|tools|call|delete`: MCP servers in sandboxes."""

import time
from typing import Annotated, Literal

import typer

from berth_cli import output
from berth_cli.client import BerthClient
from berth_cli.client.jobs import JobStatus
from berth_cli.client.sandboxes import MAX_WAIT_SECONDS, Sandbox, SandboxPage, ToolList
from berth_cli.commands._shared import (
    DEFAULT_PROFILE,
    JsonOption,
    ProfileOption,
    ToolArgOption,
    ToolArgsJsonOption,
    assignments,
    connect,
    show_tool_call,
    tool_arguments,
    tools_table,
)
from berth_cli.errors import ApiError, ExitCode, Outcome

app = typer.Typer(no_args_is_help=True, help="Sandboxes: MCP servers run in isolation on a runtime.")

SandboxArgument = Annotated[str, typer.Argument(metavar="SANDBOX", help="A sandbox (session) id.")]
# States from which a server does not come up by waiting.
_GONE = ("failed", "ended", "stopped")


@app.command()
def create(
    command: Annotated[str, typer.Option("--command", "-c", help="The server's start command.")],
    env: Annotated[list[str] | None, typer.Option("--env", "-e", metavar="NAME=VALUE",
                                                  help="An environment variable for the server; repeatable.")] = None,
    ttl: Annotated[int | None, typer.Option("--ttl", min=1, help="Lifetime in seconds (default: the policy's).")] = (
        None),
    runtime: Annotated[Literal["node", "python"] | None, typer.Option("--runtime")] = None,
    transport: Annotated[Literal["stdio", "http"] | None, typer.Option("--transport")] = None,
    wait: Annotated[bool, typer.Option("--wait", help="Wait until the server is up, then list its tools.")] = False,
    wait_timeout: Annotated[float, typer.Option("--wait-timeout", min=1, help="Seconds --wait waits.")] = 120,
    wait_for_runtime: Annotated[bool, typer.Option(
        "--wait-for-runtime",
        help="Queue it even when no registered runtime runs sandboxes yet (else it is refused).")] = False,
    profile: ProfileOption = DEFAULT_PROFILE,
    as_json: JsonOption = False,
) -> None:
    """Start an MCP server in a sandbox. With --json: the API's answer to the create, or with
    --wait the sandbox as read once its server is running."""
    variables = dict(assignments(env or [], "--env"))
    with connect(profile) as client:
        created = client.sandboxes.create(command, env=variables, ttl_seconds=ttl, runtime=runtime,
                                          transport=transport, wait=wait_for_runtime)
        session_id = created["session_id"]
        if not as_json:
            for warning in created.get("warnings", []):
                output.note(f"warning: {warning}")
        if not wait:
            if as_json:
                output.print_json(created)
            else:
                output.stdout.print(f"sandbox {output.text(session_id)} created ({output.status(created['status'])}); "
                                    f"expires {output.moment(created['expires_at'])}")
            return
        if not as_json:
            output.note(f"sandbox {output.text(session_id)} created; waiting for its server...")
        listed = _wait_until_running(client, session_id, wait_timeout)
        sandbox = client.sandboxes.get(session_id)
    if as_json:
        output.print_json(sandbox)
        return
    output.stdout.print(f"sandbox {output.text(session_id)} is {output.status(sandbox['state'])} "
                        f"({output.text(sandbox.get('isolation') or 'no isolation reported')}), "
                        f"{len(listed['tools'])} tool(s):")
    tools_table(listed["tools"])


def _wait_until_running(client: BerthClient, session_id: str, timeout: float) -> ToolList:
    """Ask for the tools with the API's readiness wait (at most 25 s a request) until the server
    answers, it failed or ended, or `timeout` passes."""
    deadline = time.monotonic() + timeout
    while True:
        remaining = deadline - time.monotonic()
        try:
            return client.sandboxes.tools(session_id, wait_seconds=round(max(min(remaining, MAX_WAIT_SECONDS), 1), 1))
        except ApiError as error:
            if error.status != 409:  # 409: not running (yet)
                raise
            refusal = error.message
        sandbox = client.sandboxes.get(session_id)
        if sandbox["state"] in _GONE:
            raise Outcome(f"sandbox {session_id} {sandbox['state']}: {sandbox.get('error') or refusal}",
                          ExitCode.NOT_STARTED)
        if time.monotonic() >= deadline:
            raise Outcome(f"sandbox {session_id} did not start within {timeout:g} s (it is {sandbox['status']}, "
                          f"its server {sandbox['state']}); it goes on: `berth sandboxes delete {session_id}`",
                          ExitCode.NOT_STARTED)
        time.sleep(min(0.5, max(deadline - time.monotonic(), 0)))  # a refusal that came at once


@app.command("list")
def list_sandboxes(
    status: Annotated[JobStatus | None, typer.Option(
        "--status", help="Only sandboxes whose job is in this status.")] = None,
    limit: Annotated[int, typer.Option("--limit", min=1, max=200, help="Sandboxes per page.")] = 20,
    cursor: Annotated[str | None, typer.Option("--cursor", help="Continue from a previous page's cursor.")] = None,
    all_pages: Annotated[bool, typer.Option(
        "--all", help="Follow the cursor through every page (with --json: one answer holding them all).")] = False,
    profile: ProfileOption = DEFAULT_PROFILE,
    as_json: JsonOption = False,
) -> None:
    """Sandboxes, newest first."""
    with connect(profile) as client:
        page = client.sandboxes.page(status=status, limit=limit, cursor=cursor)
        while all_pages and page["next_cursor"]:
            following = client.sandboxes.page(status=status, limit=limit, cursor=page["next_cursor"])
            page = SandboxPage(success=True, sandboxes=page["sandboxes"] + following["sandboxes"],
                               next_cursor=following["next_cursor"])
    if as_json:
        output.print_json(page)
        return
    output.table(["SANDBOX", "SERVER", "JOB", "RUNTIME", "COMMAND", "CREATED", "EXPIRES"], (
        [output.text(s["session_id"]), output.status(s["state"]), output.status(s["status"]),
         output.text(s.get("runtime_id")), output.text(s["start_command"]), output.moment(s["created_at"]),
         output.moment(s["expires_at"])]
        for s in page["sandboxes"]))
    if not page["sandboxes"]:
        output.note("no sandboxes")
    if page["next_cursor"]:
        output.note(f"more: --cursor {page['next_cursor']} (or --all)")


@app.command()
def get(session_id: SandboxArgument, profile: ProfileOption = DEFAULT_PROFILE, as_json: JsonOption = False) -> None:
    """One sandbox: its server's state, command, environment names and times."""
    with connect(profile) as client:
        sandbox = client.sandboxes.get(session_id)
    if as_json:
        output.print_json(sandbox)
        return
    _show(sandbox)


def _show(sandbox: Sandbox) -> None:
    output.fields([
        ("sandbox", output.text(sandbox["session_id"])),
        ("server", output.status(sandbox["state"])),
        ("job", output.status(sandbox["status"])),
        ("command", output.text(sandbox["start_command"])),
        ("runtime", f"{output.text(sandbox['runtime'])}, {output.text(sandbox['transport'])}"),
        ("env", output.text(", ".join(sandbox["env"]))),
        ("isolation", output.text(sandbox.get("isolation"))),
        ("on runtime", output.text(sandbox.get("runtime_id"))),
        ("created", output.moment(sandbox["created_at"])),
        ("expires", output.moment(sandbox["expires_at"])),
        ("error", f"[red]{output.text(sandbox.get('error'))}[/]" if sandbox.get("error") else ""),
    ])


@app.command()
def tools(
    session_id: SandboxArgument,
    wait: Annotated[float, typer.Option("--wait", min=0, max=MAX_WAIT_SECONDS,
                                        help="First wait up to this many seconds for a starting server.")] = 0,
    profile: ProfileOption = DEFAULT_PROFILE,
    as_json: JsonOption = False,
) -> None:
    """The tools the sandbox's server offers, with their arguments (* = required)."""
    with connect(profile) as client:
        listed = client.sandboxes.tools(session_id, wait_seconds=wait)
    if as_json:
        output.print_json(listed)
        return
    tools_table(listed["tools"])


@app.command()
def call(
    session_id: SandboxArgument,
    tool: Annotated[str, typer.Argument(metavar="TOOL", help="The tool's name.")],
    arg: ToolArgOption = None,
    args_json: ToolArgsJsonOption = None,
    profile: ProfileOption = DEFAULT_PROFILE,
    as_json: JsonOption = False,
) -> None:
    """Call a tool. Exit code 8 when the tool reports a failure."""
    arguments = tool_arguments(arg, args_json)
    with connect(profile) as client:
        answer = client.sandboxes.call(session_id, tool, arguments)
    show_tool_call(tool, answer, as_json)


@app.command()
def delete(session_id: SandboxArgument, profile: ProfileOption = DEFAULT_PROFILE, as_json: JsonOption = False) -> None:
    """End a sandbox: its server is stopped and its job ends."""
    with connect(profile) as client:
        result = client.sandboxes.delete(session_id)
    if as_json:
        output.print_json(result)
    else:
        output.stdout.print(f"sandbox {output.text(session_id)}: {output.status(result['status'])}")
