"""`/api/installations`: installed marketplace entries, their configuration, files, and the tools
of their servers (started on demand, stopped when idle)."""

from typing import Annotated

from fastapi import APIRouter, File, Header, Path, Query, UploadFile
from starlette.concurrency import run_in_threadpool

from app.auth.principal import USER_ID_PATTERN
from app.schemas.installations import (
    DeletedResponse,
    InstallationChanged,
    InstallationList,
    InstallationPatch,
    InstallationView,
)
from app.schemas.sandboxes import ToolCallRequest, ToolCallResponse, ToolList
from app.services.installation_files import Upload
from app.services.installations import acting_user
from app.web.deps import ServicesDep, User
from app.web.openapi import errors

router = APIRouter(prefix="/api/installations", tags=["installations"])

UserHeader = Annotated[str | None, Header(alias="X-User-Id", max_length=128, pattern=USER_ID_PATTERN,
                                          description="the user acted for (a per-user installation is theirs)")]
InstallationId = Annotated[str, Path(max_length=100)]
# What starting or reaching a server can answer besides the installation's own errors.
_SERVER_ERRORS = (403, 409, 422, 429, 502, 504)


@router.get("", response_model=InstallationList, responses=errors(400, 401, 403, 422))
def list_installations(principal: User, services: ServicesDep, limit: Annotated[int, Query(ge=1, le=200)] = 50,
                       cursor: Annotated[str | None, Query(max_length=2000)] = None,
                       user_id: Annotated[str | None, Query(max_length=200, description="one user's only")] = None
                       ) -> InstallationList:
    """The workspace's installations, newest first (per-user ones of every user, without their values)."""
    page = services.installations.page(principal, limit=limit, cursor=cursor, user_id=user_id)
    return InstallationList(installations=[InstallationView.of(found) for found in page.items],
                            next_cursor=page.cursor)


@router.get("/{installation_id}", response_model=InstallationView, responses=errors(401, 403, 404))
def read_installation(principal: User, installation_id: InstallationId, services: ServicesDep,
                      x_user_id: UserHeader = None) -> InstallationView:
    installation = services.installations.get(principal, installation_id, acting_user(principal, x_user_id))
    return InstallationView.of(installation)


@router.patch("/{installation_id}", response_model=InstallationChanged,
              responses=errors(400, 401, 404, 413, *_SERVER_ERRORS))
def update_installation(principal: User, installation_id: InstallationId, body: InstallationPatch,
                        services: ServicesDep, x_user_id: UserHeader = None) -> InstallationChanged:
    """Change values (null removes one); a running server restarts with them."""
    installation, restarted = services.installations.update(principal, installation_id, dict(body.config),
                                                            acting_user(principal, x_user_id))
    return InstallationChanged(**InstallationView.of(installation).model_dump(), restarted=restarted)


@router.delete("/{installation_id}", response_model=DeletedResponse, responses=errors(401, 403, 404, 409))
def delete_installation(principal: User, installation_id: InstallationId, services: ServicesDep,
                        x_user_id: UserHeader = None) -> DeletedResponse:
    """Stop its server; its files and sealed values go with it."""
    services.installations.delete(principal, installation_id, acting_user(principal, x_user_id))
    return DeletedResponse(id=installation_id)


@router.get("/{installation_id}/tools", response_model=ToolList, responses=errors(401, 404, *_SERVER_ERRORS))
async def list_installation_tools(principal: User, installation_id: InstallationId, services: ServicesDep,
                                  wait_seconds: Annotated[float, Query(ge=0, le=25)] = 20,
                                  x_user_id: UserHeader = None) -> ToolList:
    """The server's tools, starting it first if none runs (a first start installs its package).
    Waits at most `wait_seconds` for a starting server; 409 if it is still starting then, 502 if
    it failed (with the runtime's words). A remote installation asks the remote server."""
    user_id = acting_user(principal, x_user_id)
    return ToolList(tools=await services.installations.tools(principal, installation_id, user_id, wait_seconds))


@router.post("/{installation_id}/tools/call", response_model=ToolCallResponse,
             responses=errors(400, 401, 404, 413, *_SERVER_ERRORS))
async def call_installation_tool(principal: User, installation_id: InstallationId, body: ToolCallRequest,
                                 services: ServicesDep, x_user_id: UserHeader = None) -> ToolCallResponse:
    """A tool's own failure is `ok: false` in a 200; 504 when it takes too long."""
    user_id = acting_user(principal, x_user_id)
    answer = await services.installations.call(principal, installation_id, user_id, body.name, body.arguments)
    return ToolCallResponse(ok=answer["ok"], result=answer.get("result", {}))


@router.post("/{installation_id}/files", response_model=InstallationChanged,
             responses=errors(400, 401, 404, 413, *_SERVER_ERRORS))
async def upload_files(principal: User, installation_id: InstallationId, services: ServicesDep,
                       files: Annotated[list[UploadFile], File(description="one part per file, named by its filename")],
                       x_user_id: UserHeader = None) -> InstallationChanged:
    """Files for the server, read-only in its `files_dir`; a running server restarts to see them.
    Plain file names only (no directories); a file of the same name replaces the one before."""
    limit = services.settings.installation_file_max_bytes
    uploads = [Upload(name=part.filename or "", body=await part.read(limit + 1), content_type=part.content_type or "")
               for part in files]
    installation, restarted = await run_in_threadpool(services.installations.add_files, principal, installation_id,
                                                      uploads, acting_user(principal, x_user_id))
    return InstallationChanged(**InstallationView.of(installation).model_dump(), restarted=restarted)
