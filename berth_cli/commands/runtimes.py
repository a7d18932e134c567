"""`berth runtimes list|delete` and `berth join-tokens create|list|delete`: the hosts that run
jobs, and the tokens that register them."""

from typing import Annotated

import typer

from berth_cli import output
from berth_cli.client.runtimes import JoinTokenPage
from berth_cli.commands._shared import DEFAULT_PROFILE, JsonOption, ProfileOption, connect

app = typer.Typer(no_args_is_help=True, help="Runtimes: the workspace's own and the shared fleet.")
join_tokens = typer.Typer(no_args_is_help=True, help="Join tokens: secrets that register runtimes.")


@app.command("list")
def list_runtimes(profile: ProfileOption = DEFAULT_PROFILE, as_json: JsonOption = False) -> None:
    """The workspace's runtimes, then the shared fleet's."""
    with connect(profile) as client:
        listed = client.runtimes.runtimes()
    if as_json:
        output.print_json(listed)
        return
    output.table(["RUNTIME", "NAME", "STATUS", "SHARED", "JOBS", "CAPABILITIES", "LAST HEARTBEAT"], (
        [output.text(r["runtime_id"]), output.text(r["name"]), output.status(r["status"]),
         "yes" if r["shared"] else "", f"{r['active_jobs']}/{r['max_concurrent_jobs']}",
         output.text(", ".join(r["capabilities"])), output.moment(r["last_heartbeat_at"])]
        for r in listed["runtimes"]))
    if not listed["runtimes"]:
        output.note("no runtimes: `berth join-tokens create`, then `berth worker --join-token ...` on a host")


@app.command()
def delete(
    runtime_id: Annotated[str, typer.Argument(metavar="RUNTIME", help="A runtime id (rt_...).")],
    profile: ProfileOption = DEFAULT_PROFILE,
    as_json: JsonOption = False,
) -> None:
    """Delete a runtime: its token and key stop working, its queues go, its unfinished jobs move to
    another runtime (a sandbox that started there cannot move and ends)."""
    with connect(profile) as client:
        removed = client.runtimes.delete(runtime_id)
    if as_json:
        output.print_json(removed)
        return
    output.stdout.print(f"runtime {output.text(removed['runtime_id'])} deleted; {removed['jobs_requeued']} job(s) "
                        f"dispatched again, {removed['jobs_ended']} ended")


@join_tokens.command()
def create(
    name: Annotated[str | None, typer.Option("--name", help="What the token is for.")] = None,
    uses: Annotated[int, typer.Option("--uses", min=1, max=1000, help="How many runtimes it may register.")] = 1,
    ttl: Annotated[int, typer.Option("--ttl", min=60, help="Seconds until it expires.")] = 3600,
    shared: Annotated[bool, typer.Option("--shared", help="Operator only: runtimes that serve every workspace.")] = (
        False),
    profile: ProfileOption = DEFAULT_PROFILE,
    as_json: JsonOption = False,
) -> None:
    """Mint a join token; its secret is printed this once (give it to `berth worker` in
    BERTH_WORKER_JOIN_TOKEN)."""
    with connect(profile) as client:
        created = client.runtimes.create_join_token(name=name, uses=uses, ttl_seconds=ttl, shared=shared)
    if as_json:
        output.print_json(created)
        return
    token = created["join_token"]
    output.note(f"join token {token['token_id']}: {token['uses']} use(s), expires {output.moment(token['expires_at'])}"
                "; the secret is shown only now")
    output.stdout.print(created["token"], markup=False, highlight=False)


@join_tokens.command("list")
def list_join_tokens(
    limit: Annotated[int, typer.Option("--limit", min=1, max=200, help="Tokens per page.")] = 50,
    cursor: Annotated[str | None, typer.Option("--cursor", help="Continue from a previous page's cursor.")] = None,
    all_pages: Annotated[bool, typer.Option("--all", help="Follow the cursor through every page.")] = False,
    profile: ProfileOption = DEFAULT_PROFILE,
    as_json: JsonOption = False,
) -> None:
    """Join tokens with uses left, newest first (never their secrets)."""
    with connect(profile) as client:
        page = client.runtimes.join_tokens(limit=limit, cursor=cursor)
        while all_pages and page["next_cursor"]:
            following = client.runtimes.join_tokens(limit=limit, cursor=page["next_cursor"])
            page = JoinTokenPage(join_tokens=page["join_tokens"] + following["join_tokens"],
                                 next_cursor=following["next_cursor"])
    if as_json:
        output.print_json(page)
        return
    output.table(["TOKEN", "NAME", "PREFIX", "USES LEFT", "SHARED", "EXPIRES"], (
        [output.text(t["token_id"]), output.text(t["name"]), output.text(t["prefix"]), f"{t['uses_left']}/{t['uses']}",
         "yes" if t["shared"] else "", output.moment(t["expires_at"])]
        for t in page["join_tokens"]))
    if not page["join_tokens"]:
        output.note("no join tokens")
    if page["next_cursor"]:
        output.note(f"more: --cursor {page['next_cursor']} (or --all)")


@join_tokens.command("delete")
def delete_join_token(
    token_id: Annotated[str, typer.Argument(metavar="TOKEN", help="A join token id (jt_...).")],
    profile: ProfileOption = DEFAULT_PROFILE,
    as_json: JsonOption = False,
) -> None:
    """Revoke a join token at once (runtimes it registered stay)."""
    with connect(profile) as client:
        deleted = client.runtimes.delete_join_token(token_id)
    if as_json:
        output.print_json(deleted)
        return
    output.stdout.print(f"join token {output.text(deleted['token_id'])} revoked")
