"""`berth jobs list|get|follow|cancel`."""

from typing import Annotated

import typer

from berth_cli import output
from berth_cli.client import BerthClient
from berth_cli.client.jobs import FINAL_STATUSES, JOB_TYPES, Job, JobPage, JobStatus
from berth_cli.commands._shared import DEFAULT_PROFILE, JsonOption, ProfileOption, connect
from berth_cli.errors import ExitCode, Outcome
from berth_cli.event_view import EventView

app = typer.Typer(no_args_is_help=True, help="Jobs: list, inspect, follow their events, cancel.")

JobArgument = Annotated[str, typer.Argument(metavar="JOB", help="A job id (job_...).")]
EXIT_CODES: dict[str, ExitCode] = {"complete": ExitCode.OK, "error": ExitCode.JOB_ERROR,
                                   "cancelled": ExitCode.JOB_CANCELLED, "expired": ExitCode.JOB_EXPIRED}


@app.command("list")
def list_jobs(
    status: Annotated[JobStatus | None, typer.Option("--status", help="Only jobs in this status.")] = None,
    job_type: Annotated[str | None, typer.Option(
        "--type", help=f"Only jobs of this type ({', '.join(JOB_TYPES)}).")] = None,
    limit: Annotated[int, typer.Option("--limit", min=1, max=200, help="Jobs per page.")] = 20,
    cursor: Annotated[str | None, typer.Option("--cursor", help="Continue from a previous page's cursor.")] = None,
    all_pages: Annotated[bool, typer.Option(
        "--all", help="Follow the cursor through every page (with --json: one answer holding them all).")] = False,
    profile: ProfileOption = DEFAULT_PROFILE,
    as_json: JsonOption = False,
) -> None:
    """Jobs, newest first."""
    with connect(profile) as client:
        page = client.jobs.page(status=status, job_type=job_type, limit=limit, cursor=cursor)
        while all_pages and page["next_cursor"]:
            following = client.jobs.page(status=status, job_type=job_type, limit=limit, cursor=page["next_cursor"])
            page = JobPage(jobs=page["jobs"] + following["jobs"], next_cursor=following["next_cursor"])
    if as_json:
        output.print_json(page)
        return
    output.table(["JOB", "TYPE", "STATUS", "CREATED", "RUNTIME", "ERROR"], (
        [output.text(job["job_id"]), output.text(job["type"]), output.status(job["status"]),
         output.moment(job["created_at"]), output.text(job.get("runtime_id")), output.text(job.get("error"))]
        for job in page["jobs"]))
    if not page["jobs"]:
        output.note("no jobs")
    if page["next_cursor"]:
        output.note(f"more: --cursor {page['next_cursor']} (or --all)")


@app.command()
def get(job_id: JobArgument, profile: ProfileOption = DEFAULT_PROFILE, as_json: JsonOption = False) -> None:
    """One job: its status, times, payload and result."""
    with connect(profile) as client:
        job = client.jobs.get(job_id)
    if as_json:
        output.print_json(job)
        return
    show_job(job)


def show_job(job: Job) -> None:
    output.fields([
        ("job", output.text(job["job_id"])),
        ("type", output.text(job["type"])),
        ("status", output.status(job["status"]) + (" (cancel requested)" if job.get("cancel_requested") else "")),
        ("created", output.moment(job["created_at"])),
        ("started", output.moment(job.get("started_at"))),
        ("finished", output.moment(job.get("finished_at"))),
        ("expires", output.moment(job["expires_at"])),
        ("runtime", output.text(job.get("runtime_id"))),
        ("waiting for", output.text(waiting["message"] if (waiting := job.get("waiting_for")) else None)),
        ("payload", output.text(job.get("payload"), multiline=True)),
        ("result", output.text(job.get("result"), multiline=True)),
        ("error", f"[red]{output.text(job.get('error'))}[/]" if job.get("error") else ""),
    ])


@app.command()
def follow(
    job_id: JobArgument,
    after: Annotated[int, typer.Option("--after", min=0, help="Start after this event sequence number.")] = 0,
    profile: ProfileOption = DEFAULT_PROFILE,
    as_json: JsonOption = False,
) -> None:
    """Watch a job's events live until it ends.

    The exit code says how it ended: 0 complete, 5 error, 6 cancelled, 7 expired. With --json,
    one event per line as the API sends it.
    """
    with connect(profile) as client:
        try:
            job = _follow(client, job_id, after, as_json)
        except KeyboardInterrupt:
            raise Outcome(f"stopped following {job_id}; the job goes on (`berth jobs cancel {job_id}` stops it)",
                          ExitCode.INTERRUPTED) from None
    if job["status"] not in FINAL_STATUSES:
        raise Outcome(f"the event stream ended but job {job_id} is {job['status']}", ExitCode.API_ERROR)
    code = EXIT_CODES[job["status"]]
    if not as_json:
        ending = f": {job['error']}" if job.get("error") and job["error"] != job["status"] else ""
        style = "green" if code is ExitCode.OK else "red"
        output.stderr.print(f"[{style}]job {output.text(job_id)} {output.text(job['status'])}[/]{output.text(ending)}")
    if code is not ExitCode.OK:
        raise typer.Exit(code)


def _follow(client: BerthClient, job_id: str, after: int, as_json: bool) -> Job:
    """Stream to the job's end, then read it once more: the final status and error as stored."""
    job = client.jobs.get(job_id)  # a mistyped id fails here, before any rendering
    if as_json:
        for event in client.jobs.events(job_id, after=after):
            output.print_json_line(event)
        return client.jobs.get(job_id)
    output.stderr.print(f"following {output.text(job_id)} ({output.text(job['type'])}); Ctrl-C stops following")
    # On a terminal, a live status line and progress bars under the event lines; into a file or
    # a pipe, the lines alone.
    with EventView(output.stdout, job_id, job["status"]) as view:
        for event in client.jobs.events(job_id, after=after):
            view.show(event)
    return client.jobs.get(job_id)


@app.command()
def cancel(job_id: JobArgument, profile: ProfileOption = DEFAULT_PROFILE, as_json: JsonOption = False) -> None:
    """Cancel a job: a queued one at once, a running one when its worker confirms."""
    with connect(profile) as client:
        result = client.jobs.cancel(job_id)
    if as_json:
        output.print_json(result)
    elif result["status"] == "running":
        output.stdout.print(f"job {output.text(job_id)}: cancel requested; its worker stops it and confirms "
                            f"(`berth jobs follow {output.text(job_id)}` shows when)")
    else:
        output.stdout.print(f"job {output.text(job_id)}: {output.status(result['status'])}")
