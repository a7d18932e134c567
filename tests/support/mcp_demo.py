"""A demonstration MCP server on berth's `/mcp` foundation, for the endpoint and client tests.

Three tools show the conventions berth's real tools follow (app/mcp/tools.py): precise input
schemas, typed results (`outputSchema` + `structuredContent`), truthful hints, a tier each, and
user mistakes as tool errors. They keep notes in a dict the test owns. The app is berth's own
`create_app()` with the `/mcp` route added, authenticated by a table of API keys.

The Node side (the official TypeScript client, the conformance suite) installs from npm once into
.cache/mcp-interop and is reused by later runs.
"""

import contextlib
import json
import shutil
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Literal

import uvicorn
from fastapi import FastAPI
from mcp.server.mcpserver import Context
from pydantic import BaseModel, Field
from starlette.requests import Request

from app.auth.principal import Principal, Tier, bearer_secret
from app.errors import Conflict, NotFound, Unauthorized
from app.local.stack import free_port
from app.main import create_app
from app.mcp.endpoint import StatelessMCPEndpoint, mcp_router
from app.mcp.tools import TieredTool, build_server, caller_of, changes, reads, tool

LAMBDA_HOST = "abc123.execute-api.us-east-1.amazonaws.com"
ALLOWED_HOSTS = (LAMBDA_HOST, "127.0.0.1:*", "localhost:*")
KEYS = {
    f"key-{tier.value}": Principal(kind="api_key", workspace_id="ws_demo", subject_id=f"key_{tier.value}",
                                   tier=tier, credential_digest="")
    for tier in Tier
}


class ServiceStatus(BaseModel):
    status: Literal["ok"]
    workspace_id: str
    tier: Tier
    notes: int


class Note(BaseModel):
    id: str
    title: str
    priority: Literal["low", "normal", "high"]


class NoteDeleted(BaseModel):
    id: str
    deleted: bool = Field(description="false when the note was already gone")


def demo_tools(notes: dict[str, Note]) -> list[TieredTool]:
    def service_status(ctx: Context) -> ServiceStatus:
        """Report that the service answers, and who is asking."""
        caller = caller_of(ctx)
        return ServiceStatus(status="ok", workspace_id=caller.workspace_id, tier=caller.tier, notes=len(notes))

    def notes_create(
        title: Annotated[str, Field(min_length=1, max_length=40, description="unique among the notes")],
        priority: Literal["low", "normal", "high"] = "normal",
    ) -> Note:
        """Create a note; a title already in use is refused."""
        if any(note.title == title for note in notes.values()):
            raise Conflict(f"a note titled {title!r} already exists")
        note = Note(id=f"note_{len(notes) + 1}", title=title, priority=priority)
        notes[note.id] = note
        return note

    def notes_delete(note_id: Annotated[str, Field(pattern=r"^note_\d+$")], missing_ok: bool = False) -> NoteDeleted:
        """Delete a note for good."""
        deleted = notes.pop(note_id, None) is not None
        if not deleted and not missing_ok:
            raise NotFound(f"no note {note_id}")
        return NoteDeleted(id=note_id, deleted=deleted)

    return [
        tool(service_status, tier=Tier.read, annotations=reads("Service status")),
        tool(notes_create, tier=Tier.standard,
             annotations=changes("Create a note", destructive=False, idempotent=False)),
        tool(notes_delete, tier=Tier.admin, annotations=changes("Delete a note", destructive=True, idempotent=True)),
    ]


async def authenticate_by_key(request: Request) -> Principal:
    secret = bearer_secret(request.headers.get("authorization"), request.headers.get("x-api-key"))
    caller = KEYS.get(secret or "")
    if caller is None:
        raise Unauthorized("missing or unknown API key")
    return caller


def demo_app(notes: dict[str, Note]) -> FastAPI:
    app = create_app()
    server = build_server("berth-demo", "0.0.1", demo_tools(notes))
    endpoint = StatelessMCPEndpoint(server, authenticate=authenticate_by_key, allowed_hosts=ALLOWED_HOSTS)
    app.include_router(mcp_router(endpoint))
    return app


@contextlib.contextmanager
def serve(app: FastAPI) -> Iterator[str]:
    """Serve `app` with uvicorn on a free loopback port in a thread; yields its base URL."""
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="off"))
    thread = threading.Thread(target=server.run, name="mcp-demo-uvicorn", daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("uvicorn did not start")
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)


NODE_PROJECT = Path(__file__).parent / "mcp_ts_client"
NODE_PREFIX = Path(__file__).parents[2] / ".cache" / "mcp-interop"  # gitignored; kept between runs


def node_interop() -> Path:
    """The Node project with its npm dependencies installed (a no-op when they already are)."""
    assert shutil.which("npm"), "node and npm are needed for the TypeScript client tests"
    NODE_PREFIX.mkdir(parents=True, exist_ok=True)
    for name in ("package.json", "package-lock.json", "client.mjs"):
        shutil.copyfile(NODE_PROJECT / name, NODE_PREFIX / name)
    subprocess.run(["npm", "install", "--no-audit", "--no-fund", "--prefer-offline"], cwd=NODE_PREFIX,
                   check=True, capture_output=True, timeout=300)
    return NODE_PREFIX


def run_ts_client(project: Path, url: str, headers: dict[str, str], calls: list[dict]) -> dict:
    request = json.dumps({"url": url, "headers": headers, "calls": calls})
    finished = subprocess.run(["node", str(project / "client.mjs"), request], capture_output=True, text=True,
                              timeout=60, check=True)
    return json.loads(finished.stdout.strip().splitlines()[-1])
