"""`berth ssh hosts|actions|lease|run|runs|forward`: infra SSH, admin only.

The CLI's key acts for a person, whom every request names (`X-User-Id`): `--as`, else
`BERTH_USER_ID`, else the profile's e-mail. `berth ssh lease request` asks for an approval lease;
`berth ssh lease approve` signs in with your password for that one request, because a lease is
approved by a person signed in, never with a key.
"""

import os
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Annotated, Any

import typer

from berth_cli import output
from berth_cli.client import BerthClient
from berth_cli.client.infra_ssh import MAX_WAIT_SECONDS, Forward, LeaseAnswer, Run
from berth_cli.commands._shared import DEFAULT_PROFILE, JsonOption, ProfileOption
from berth_cli.commands.auth import PasswordStdinOption, read_password, signed_in
from berth_cli.errors import ExitCode, NotConfigured, Outcome
from berth_cli.profiles import ProfileStore, resolve

app = typer.Typer(no_args_is_help=True, help="Infra SSH: allow-listed actions on inventory hosts, under a lease a "
                                             "person approves.")
lease_app = typer.Typer(no_args_is_help=True, help="The approval lease: show, request, approve, revoke.")
forward_app = typer.Typer(no_args_is_help=True, help="Port forwards to a host: open, list, close.")
app.add_typer(lease_app, name="lease")
app.add_typer(forward_app, name="forward")

ActingFor = Annotated[str | None, typer.Option(
    "--as", envvar="BERTH_USER_ID", help="The person the key acts for (X-User-Id); default: the profile's e-mail.")]
WaitOption = Annotated[float, typer.Option("--wait", min=0, max=MAX_WAIT_SECONDS,
                                           help="Seconds to wait for the result before answering with the run id.")]


@contextmanager
def _connect(profile: str, acting_for: str | None) -> Iterator[BerthClient]:
    connection = resolve(profile)
    # The profile's person only when the profile's key is the one used.
    saved = ProfileStore().get(profile) if not os.environ.get("BERTH_API_KEY") else None
    person = acting_for or (saved.email if saved else None)
    if not person:
        raise NotConfigured("say for whom the key acts: --as NAME or BERTH_USER_ID")
    with BerthClient(connection.api_url, connection.api_key) as client:
        client.ssh.acting_for = person
        yield client


@app.command()
def hosts(profile: ProfileOption = DEFAULT_PROFILE, acting_for: ActingFor = None, as_json: JsonOption = False) -> None:
    """The host inventory: no secrets, the pinned host key's fingerprint and where its client key is kept."""
    with _connect(profile, acting_for) as client:
        listed = client.ssh.hosts()
    if as_json:
        output.print_json(listed)
        return
    output.table(("HOST", "ADDRESS", "USER", "HOST KEY", "KEY FROM", "ACTIONS", "FORWARDS"), [
        (output.text(h["name"]), output.text(f"{h['address']}:{h['port']}"), output.text(h["user"]),
         output.text(h["host_key_fingerprint"]), output.text(h["client_key_source"]),
         output.text(", ".join(h["actions"])), output.text(", ".join(h["forwards"]))) for h in listed])


@app.command()
def actions(name: Annotated[str | None, typer.Argument(help="Describe this action in full.")] = None,
            profile: ProfileOption = DEFAULT_PROFILE, acting_for: ActingFor = None,
            as_json: JsonOption = False) -> None:
    """The named actions, or one in full (its command template and what each parameter accepts)."""
    with _connect(profile, acting_for) as client:
        found: Any = client.ssh.action(name) if name else client.ssh.actions()
    if as_json or name:
        output.print_json(found)
        return
    output.table(("ACTION", "COMMAND", "PARAMETERS", "RUNS ON", "TIMEOUT"), [
        (output.text(a["name"]), output.text(" ".join(a["command"])), output.text(", ".join(a["parameters"])),
         output.text(", ".join(a["hosts"] + [f"label:{label}" for label in a["labels"]])),
         output.text(f"{a['timeout_seconds']} s")) for a in found])


# --- the lease ----------------------------------------------------------------------------------------


def _show_lease(answer: LeaseAnswer, as_json: bool) -> None:
    if as_json:
        output.print_json(answer)
        return
    lease = answer["lease"]
    if lease is None:
        output.stdout.print("no lease: `berth ssh lease request --reason ... --ttl ...`")
        return
    output.fields([("lease", output.text(lease["lease_id"])), ("state", output.status(lease["state"])),
                   ("reason", output.text(lease["reason"])),
                   ("requested", output.text(f"{lease['requested_for']} via {lease['requested_via']} at "
                                             f"{output.moment(lease['requested_at'])}")),
                   ("approved", output.text(f"{lease['approved_by'] or '-'} {output.moment(lease['approved_at'])}")),
                   ("expires", output.moment(lease["expires_at"] or lease["request_expires_at"])),
                   ("ended", output.text(f"{lease['end_reason'] or '-'} {output.moment(lease['ended_at'])}"))])
    if answer["stopped"]:
        output.note(f"stopped: {', '.join(answer['stopped'])}")
    if lease["state"] == "pending":
        output.note(f"a person approves it, signed in: berth ssh lease approve {lease['lease_id']}")


@lease_app.command("show")
def show_lease(profile: ProfileOption = DEFAULT_PROFILE, acting_for: ActingFor = None,
               as_json: JsonOption = False) -> None:
    """The lease: pending, active (and until when), or the last one, over."""
    with _connect(profile, acting_for) as client:
        _show_lease(client.ssh.lease(), as_json)


@lease_app.command("request")
def request_lease(reason: Annotated[str, typer.Option("--reason", help="Why: kept in the audit record.")],
                  ttl: Annotated[int, typer.Option("--ttl", min=10, help="Seconds it lasts once approved.")] = 900,
                  profile: ProfileOption = DEFAULT_PROFILE, acting_for: ActingFor = None,
                  as_json: JsonOption = False) -> None:
    """Ask for an approval lease; it waits for a person to approve it."""
    with _connect(profile, acting_for) as client:
        _show_lease(client.ssh.request_lease(reason, ttl), as_json)


@lease_app.command("approve")
def approve_lease(lease_id: Annotated[str, typer.Argument(metavar="LEASE", help="The pending lease's id.")],
                  email: Annotated[str | None, typer.Option("--email", help="Sign in as (default: the profile's).")]
                  = None,
                  password_stdin: PasswordStdinOption = False, profile: ProfileOption = DEFAULT_PROFILE,
                  as_json: JsonOption = False) -> None:
    """Approve a pending lease, signed in with your password for this one request (a key cannot
    approve: a person does)."""
    api_url = resolve(profile).api_url
    address = email or getattr(ProfileStore().get(profile), "email", None) or typer.prompt("Email")
    with signed_in(api_url, address, read_password(password_stdin)) as (client, _user):
        answer = client.ssh.approve_lease(lease_id)
    _show_lease(answer, as_json)


@lease_app.command("revoke")
def revoke_lease(profile: ProfileOption = DEFAULT_PROFILE, acting_for: ActingFor = None,
                 as_json: JsonOption = False) -> None:
    """End the lease (or decline a request): its runs and forwards stop."""
    with _connect(profile, acting_for) as client:
        _show_lease(client.ssh.revoke_lease(), as_json)


# --- runs ---------------------------------------------------------------------------------------------


def _parameters(values: list[str]) -> dict[str, Any]:
    parameters: dict[str, Any] = {}
    for value in values:
        name, separator, given = value.partition("=")
        if not separator or not name:
            raise typer.BadParameter(f"expected NAME=VALUE, got {value!r}", param_hint="--param")
        parameters[name] = given  # the API takes an integer's decimal text as the integer
    return parameters


def _show_run(run: Run) -> None:
    output.fields([("run", output.text(run["run_id"])), ("status", output.status(run["status"])),
                   ("outcome", output.status(run.get("outcome"))),
                   ("on", output.text(f"{run['action']} on {run['host']}")),
                   ("exit", output.text(run.get("exit_status") if run.get("ended") == "exited" else run.get("ended"))),
                   ("failure", output.text(run.get("failure") or run.get("error") or ""))])
    if run.get("stdout"):
        output.stdout.out(run["stdout"], highlight=False, end="")
    if run.get("stderr"):
        output.stderr.out(run["stderr"], highlight=False, end="")


@app.command()
def run(action: Annotated[str, typer.Argument(help="The action's name.")],
        host: Annotated[str, typer.Option("--host", help="The inventory host to run it on.")],
        param: Annotated[list[str] | None, typer.Option("--param", "-P", metavar="NAME=VALUE",
                                                        help="A parameter; repeatable.")] = None,
        wait: WaitOption = 20.0, profile: ProfileOption = DEFAULT_PROFILE, acting_for: ActingFor = None,
        as_json: JsonOption = False) -> None:
    """Run an action while a lease is active. Exits 0 when it ran and exited 0; a run still going
    after --wait prints its id (follow it with `berth ssh runs RUN`)."""
    with _connect(profile, acting_for) as client:
        ran = client.ssh.run(action, host, _parameters(param or []), wait)
    if as_json:
        output.print_json(ran)
    else:
        _show_run(ran)
    _exit_for(ran)


def _exit_for(run: Run) -> None:
    if run.get("outcome") in (None, "ok"):
        return
    raise Outcome(f"run {run['run_id']} {run.get('outcome')}: {run.get('failure') or run.get('error') or 'exit '}"
                  f"{run.get('exit_status') if run.get('exit_status') is not None else ''}".rstrip(),
                  ExitCode.JOB_ERROR)


@app.command()
def runs(run_id: Annotated[str | None, typer.Argument(metavar="RUN", help="Show this run in full.")] = None,
         profile: ProfileOption = DEFAULT_PROFILE, acting_for: ActingFor = None, as_json: JsonOption = False) -> None:
    """Runs, newest first, or one in full."""
    with _connect(profile, acting_for) as client:
        found: Any = client.ssh.get_run(run_id) if run_id else client.ssh.runs()
    if as_json:
        output.print_json(found)
    elif run_id:
        _show_run(found)
    else:
        output.table(("RUN", "ACTION", "HOST", "STATUS", "OUTCOME", "EXIT", "BY", "AT"), [
            (output.text(r["run_id"]), output.text(r["action"]), output.text(r["host"]), output.status(r["status"]),
             output.status(r.get("outcome")), output.text(r.get("exit_status")),
             output.text(r["requested"].get("user_id")), output.moment(r["created_at"])) for r in found])


# --- forwards -------------------------------------------------------------------------------------------


def _forward_row(forward: Forward) -> tuple[str, ...]:
    return (output.text(forward["forward_id"]), output.text(forward["forward"]), output.text(forward["host"]),
            output.text(forward["target"]), output.status(forward["state"]), output.moment(forward["expires_at"]),
            output.text(forward["proxy_url"]))


_FORWARD_COLUMNS = ("FORWARD", "NAME", "HOST", "TARGET", "STATE", "EXPIRES", "PROXY")


@forward_app.command("open")
def open_forward(name: Annotated[str, typer.Argument(help="The forward's name in the inventory.")],
                 host: Annotated[str, typer.Option("--host", help="The host to forward through.")],
                 ttl: Annotated[int | None, typer.Option("--ttl", min=10, help="Seconds (default: its longest).")]
                 = None,
                 wait: WaitOption = 20.0, profile: ProfileOption = DEFAULT_PROFILE, acting_for: ActingFor = None,
                 as_json: JsonOption = False) -> None:
    """Open a port forward while a lease is active; reach it over HTTP at its proxy URL."""
    with _connect(profile, acting_for) as client:
        forward = client.ssh.open_forward(name, host, ttl, wait)
    if as_json:
        output.print_json(forward)
        return
    output.table(_FORWARD_COLUMNS, [_forward_row(forward)])
    if forward["state"] == "failed":
        raise Outcome(f"forward {forward['forward_id']} failed: {forward['failure'] or forward['error']}",
                      ExitCode.JOB_ERROR)


@forward_app.command("list")
def list_forwards(profile: ProfileOption = DEFAULT_PROFILE, acting_for: ActingFor = None,
                  as_json: JsonOption = False) -> None:
    """Forwards, newest first."""
    with _connect(profile, acting_for) as client:
        listed = client.ssh.forwards()
    if as_json:
        output.print_json(listed)
        return
    output.table(_FORWARD_COLUMNS, [_forward_row(forward) for forward in listed])


@forward_app.command("close")
def close_forward(forward_id: Annotated[str, typer.Argument(metavar="FORWARD")],
                  profile: ProfileOption = DEFAULT_PROFILE, acting_for: ActingFor = None,
                  as_json: JsonOption = False) -> None:
    """Close a forward."""
    with _connect(profile, acting_for) as client:
        forward = client.ssh.close_forward(forward_id)
    if as_json:
        output.print_json(forward)
        return
    output.table(_FORWARD_COLUMNS, [_forward_row(forward)])
