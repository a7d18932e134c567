"""`berth models search|resolve|attach|list|delete`."""

import sys
import time
from typing import Annotated, Any

import typer

from berth_cli import output
from berth_cli.client import BerthClient
from berth_cli.client.jobs import FINAL_STATUSES, JobEvent
from berth_cli.client.models import Attached, Installation, Profile
from berth_cli.commands._shared import DEFAULT_PROFILE, JsonOption, ProfileOption, connect
from berth_cli.errors import ExitCode, Outcome
from berth_cli.event_view import EventView

app = typer.Typer(no_args_is_help=True, help="Models: find them, attach them to runtimes, serve them at /openai/v1.")

ModelArgument = Annotated[str, typer.Argument(
    metavar="MODEL", help="A Hugging Face repo (namespace/name), an s3:// prefix, a directory on the runtime host"
                          " (/path), or an OpenAI-compatible server's base URL (http://host:port/v1).")]
RevisionOption = Annotated[str | None, typer.Option("--revision", help="A branch, tag or commit (default: main).")]


def source_of(model: str, revision: str | None = None, served: str | None = None,
              api_key: str | None = None) -> dict[str, Any]:
    """MODEL as a resolve request: its kind told by its form."""
    if model.startswith("s3://"):
        return {"sourceType": "s3", "sourceUri": model}
    if model.startswith("/"):
        return {"sourceType": "local_path", "path": model}
    if model.startswith(("http://", "https://")) and "huggingface.co/" not in model:
        return {"sourceType": "openai_compatible", "sourceUri": model, "model": served, "apiKey": api_key}
    return {"sourceType": "huggingface", "externalId": model, "branch": revision}


@app.command()
def search(
    query: Annotated[str | None, typer.Argument(metavar="[QUERY]", help="Words in the repo id.")] = None,
    task: Annotated[str | None, typer.Option("--task", help="A pipeline tag, e.g. text-generation.")] = None,
    limit: Annotated[int, typer.Option("--limit", min=1, max=100)] = 20,
    profile: ProfileOption = DEFAULT_PROFILE,
    as_json: JsonOption = False,
) -> None:
    """Hugging Face models, most downloaded first (the curated ones when the hub cannot be reached)."""
    with connect(profile) as client:
        found = client.models.search(query, task=task, limit=limit)
    if as_json:
        output.print_json(found)
        return
    output.table(["MODEL", "TASK", "DOWNLOADS", "LIKES", "GATED"], (
        [output.text(item["id"]), output.text(item.get("task")), output.text(item.get("downloads")),
         output.text(item.get("likes")), "yes" if item.get("gated") else ""] for item in found["items"]))
    if not found["live"]:
        output.note(f"the hub could not be searched ({found.get('reason') or 'unreachable'}): curated models shown")
    elif not found["items"]:
        output.note("no models found")


@app.command()
def resolve(
    model: ModelArgument,
    revision: RevisionOption = None,
    served: Annotated[str | None, typer.Option("--model", help="An endpoint's model name.")] = None,
    api_key_stdin: Annotated[bool, typer.Option("--api-key-stdin", help="Read an endpoint's key from stdin.")] = False,
    profile: ProfileOption = DEFAULT_PROFILE,
    as_json: JsonOption = False,
) -> None:
    """What MODEL is, whether this workspace can download it, and whether vLLM can serve it."""
    key = sys.stdin.readline().strip() if api_key_stdin else None
    with connect(profile) as client:
        preview = client.models.resolve({k: v for k, v in source_of(model, revision, served, key).items() if v})
    if as_json:
        output.print_json(preview)
        return
    show_profile(preview)


def show_profile(found: Profile) -> None:
    engines = "; ".join(f"{name}: {'yes' if verdict['servable'] else 'no' if verdict['servable'] is False else '?'}"
                        f" ({verdict['reason']})" for name, verdict in found["engines"].items())
    parameters, weights = found.get("parameter_count"), found.get("weight_bytes")
    output.fields([
        ("model", output.text(found["external_id"])),
        ("name", output.text(found["display_name"])),
        ("status", output.status(found["status"])),
        ("task", output.text(found.get("task"))),
        ("library", output.text(found.get("library"))),
        ("license", output.text(found.get("license"))),
        ("architecture", output.text(found.get("architecture"))),
        ("parameters", f"{parameters:,}" if parameters else ""),
        ("weights", output.size(weights) if weights else ""),
        ("commit", output.text(found.get("commit"))),
        ("access", output.text(found["access"]) + (" (gated)" if found["gated"] else "")
         + (" (private)" if found["private"] else "")),
        ("engines", output.text(engines)),
    ])


@app.command()
def attach(
    model: Annotated[str, typer.Argument(metavar="MODEL", help="A profile id (mprof_...) or what `resolve` takes.")],
    runtime: Annotated[str, typer.Option("--runtime", help="The runtime to serve it (`external` for a server URL).")],
    revision: RevisionOption = None,
    served_name: Annotated[str | None, typer.Option(
        "--served-name", help="What clients send as `model` (default: the repo id).")] = None,
    tensor_parallel_size: Annotated[int | None, typer.Option("--tensor-parallel-size", min=1)] = None,
    max_model_len: Annotated[int | None, typer.Option("--max-model-len", min=16)] = None,
    gpu_memory_utilization: Annotated[float | None, typer.Option("--gpu-memory-utilization", min=0.01, max=1)] = None,
    follow: Annotated[bool, typer.Option("--follow", help="Watch it download, verify and start, until ready.")] = False,
    profile: ProfileOption = DEFAULT_PROFILE,
    as_json: JsonOption = False,
) -> None:
    """Put a model on a runtime and serve it with vLLM. With --follow: a progress bar of the bytes
    and each step, until it is ready (exit 0) or failed (exit 5)."""
    settings = {"servedModelName": served_name, "tensorParallelSize": tensor_parallel_size,
                "maxModelLen": max_model_len, "gpuMemoryUtilization": gpu_memory_utilization}
    with connect(profile) as client:
        profile_id = model if model.startswith("mprof_") else _new_profile(client, model, revision)
        attached = client.models.attach(profile_id, {"runtimeId": runtime,
                                                     **{k: v for k, v in settings.items() if v is not None}})
        if not follow:
            if as_json:
                output.print_json(attached)
            else:
                output.stdout.print(f"installation {output.text(attached['installation_id'])} on runtime "
                                    f"{output.text(runtime)}: {output.status(attached['installation']['status'])}"
                                    + (f"; `berth jobs follow {attached['job_id']}` shows its progress"
                                       if attached["job_id"] else ""))
            return
        installation = _follow(client, attached, as_json)
    if installation["status"] != "ready":
        raise Outcome(f"installation {installation['id']} {installation['status']}: {installation.get('error')}",
                      ExitCode.JOB_ERROR)
    if not as_json:
        output.stderr.print(f"[green]ready[/]: send `model: {output.text(installation['model_name'])}` to "
                            f"{output.text(client.http.api_url)}/openai/v1")


def _new_profile(client: BerthClient, model: str, revision: str | None) -> str:
    source = source_of(model, revision)
    body = {"source_type": source["sourceType"], "revision": revision,
            "external_id": source.get("externalId") or source.get("path") or source.get("model"),
            "source_uri": source.get("sourceUri")}
    return client.models.create_profile({k: v for k, v in body.items() if v})["profile"]["id"]


INSTALLATION_CATCH_UP_SECONDS = 5.0


def _follow(client: BerthClient, attached: Attached, as_json: bool) -> Installation:
    """The attach job's events until its installation is ready or failed (the job itself runs on,
    serving), then the installation as stored."""
    job_id = attached["job_id"]
    last: JobEvent | None = None
    if job_id is not None:
        if as_json:
            for last in client.jobs.events(job_id):
                output.print_json_line(last)
                if _ends_following(last):
                    break
        else:
            with EventView(output.stdout, job_id, "queued") as view:
                for last in client.jobs.events(job_id):
                    view.show(last)
                    if _ends_following(last):
                        break
    # The installation record follows its job's events by a moment: read it until it says what
    # the last event said (a few seconds at most).
    said = (last["data"] or {}).get("installation_status") if last is not None else None
    deadline = time.monotonic() + INSTALLATION_CATCH_UP_SECONDS
    while True:
        installation = client.models.installation(attached["installation_id"])
        if said is None or installation["status"] == said or time.monotonic() > deadline:
            return installation
        time.sleep(0.1)


def _ends_following(event: JobEvent) -> bool:
    installation_status = (event.get("data") or {}).get("installation_status")
    return installation_status in ("ready", "failed") or (event["step"] == "job" and event["status"] in FINAL_STATUSES)


@app.command("list")
def list_models(
    profiles: Annotated[bool, typer.Option("--profiles", help="List the profiles instead of installations.")] = False,
    profile: ProfileOption = DEFAULT_PROFILE,
    as_json: JsonOption = False,
) -> None:
    """The workspace's installations (or profiles), newest first, with their status and progress."""
    with connect(profile) as client:
        found: Any = client.models.profiles() if profiles else client.models.installations()
    if as_json:
        output.print_json(found)
        return
    if profiles:
        output.table(["PROFILE", "MODEL", "STATUS", "TASK", "COMMIT"], (
            [output.text(p["id"]), output.text(p["external_id"]), output.status(p["status"]),
             output.text(p.get("task")), output.text((p.get("commit") or "")[:12])] for p in found["profiles"]))
        return
    output.table(["INSTALLATION", "MODEL", "RUNTIME", "STATUS", "PROGRESS", "ERROR"], (
        [output.text(i["id"]), output.text(i["model_name"]), output.text(i["runtime_id"]), output.status(i["status"]),
         f"{i['progress']}%", output.text(i.get("error"))] for i in found["installations"]))
    if not found["installations"]:
        output.note("no installations: `berth models attach MODEL --runtime RUNTIME` makes one")


@app.command()
def delete(
    installation_id: Annotated[str, typer.Argument(metavar="INSTALLATION", help="An installation id (minst_...).")],
    profile: ProfileOption = DEFAULT_PROFILE,
    as_json: JsonOption = False,
) -> None:
    """Stop serving it and remove it; its files leave the runtime's cache unless another installation uses them."""
    with connect(profile) as client:
        removed = client.models.delete(installation_id)
    if as_json:
        output.print_json(removed)
        return
    freed = f"freed {output.size(removed['freed_bytes'])}" if removed["evicted"] else output.text(removed["reason"])
    output.stdout.print(f"installation {output.text(installation_id)} removed; {freed}")
