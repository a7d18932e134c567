"""Bodies of `/api/installations`: installations as shown (secret values never; a hint of each),
their changes, files and tool calls."""

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from app.contract.sandbox_files import SANDBOX_FILES_DIR
from app.domain.installations import Installation, InstalledFile


class SecretView(BaseModel):
    name: str
    hint: str = Field(description="the last characters of a long value, else `set`; never the value")


class FileView(BaseModel):
    name: str
    size_bytes: int
    sha256: str
    uploaded_at: str
    path: str = Field(description="where the server reads it, read-only")

    @classmethod
    def of(cls, file: InstalledFile) -> "FileView":
        return cls(name=file.name, size_bytes=file.size_bytes, sha256=file.sha256, uploaded_at=file.uploaded_at,
                   path=f"{SANDBOX_FILES_DIR}/{file.name}")


def next_step(installation: Installation) -> str:
    if installation.state == "needs_oauth":
        pending = ", ".join(installation.pending)
        return f"its user must sign in with the server's provider (OAuth) to supply {pending}; until then its " \
               "tools cannot be used"
    if installation.kind == "remote":
        return f"ready: GET /api/installations/{installation.installation_id}/tools calls the remote server"
    return (f"ready: GET /api/installations/{installation.installation_id}/tools starts its server (installing "
            "the package on first use) and lists its tools")


class InstallationView(BaseModel):
    id: str
    entry_id: str
    entry_version: str
    origin: str
    title: str
    kind: Literal["package", "remote"]
    scope: Literal["workspace", "user"]
    user_id: str | None
    state: Literal["ready", "needs_oauth"]
    pending: list[str] = Field(description="required values its user's OAuth sign-in is to supply")
    next: str = Field(description="what comes next, in words")
    config: dict[str, str] = Field(description="values that are not secret")
    secrets: list[SecretView] = Field(description="secret values given: names and hints only")
    files: list[FileView]
    files_dir: str = Field(SANDBOX_FILES_DIR, description="where its server finds the files, read-only")
    sandbox_id: str | None = Field(description="the sandbox serving it, while one does")
    last_error: str | None
    created_at: str
    updated_at: str

    @classmethod
    def of(cls, installation: Installation) -> "InstallationView":
        return cls(
            id=installation.installation_id, entry_id=installation.entry_id,
            entry_version=installation.entry_version, origin=installation.origin, title=installation.title,
            kind=installation.kind, scope=installation.scope, user_id=installation.user_id, state=installation.state,
            pending=installation.pending, next=next_step(installation), config=installation.config,
            secrets=[SecretView(name=name, hint=hint) for name, hint in sorted(installation.secret_hints.items())],
            files=[FileView.of(file) for file in installation.files], sandbox_id=installation.sandbox_id,
            last_error=installation.last_error, created_at=installation.created_at,
            updated_at=installation.updated_at)


class InstallationChanged(InstallationView):
    restarted: bool = Field(description="its running server was restarted to take the change")


class InstallationList(BaseModel):
    success: bool = True
    installations: list[InstallationView]
    next_cursor: str | None = None


class InstallationPatch(BaseModel):
    model_config = ConfigDict(extra="forbid")

    config: dict[str, str | None] = Field(min_length=1, max_length=200,
                                          description="new values by input name; null removes one")


class DeletedResponse(BaseModel):
    success: bool = True
    id: str
    deleted: bool = True
