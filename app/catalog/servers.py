"""`server.json` documents as typed records: the curated ones shipped here, and any a registry
answers with (the API's marketplace refresh parses those with the same model).

The package part is the worker contract's `PackageSpec`, so what the marketplace stores is
exactly what a sandbox job carries.
"""

import functools
import json
from pathlib import Path
from typing import Any, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel

from app.catalog.models import ModelDocument
from app.contract.packages import Input, KeyValueInput, PackageSpec

SERVER_SCHEMA_PATH = Path(__file__).parent / "server.schema.json"
CURATED_SERVERS_DIR = Path(__file__).parent / "servers"
BERTH_META = "dev.berth/catalog"

Model = TypeVar("Model", bound=BaseModel)


class _ServerJsonModel(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="ignore", frozen=True)


class Repository(_ServerJsonModel):
    url: str
    source: str
    id: str | None = None
    subfolder: str | None = None


class Remote(_ServerJsonModel):
    """A server someone else runs, reached over HTTP: no package, no sandbox."""

    type: Literal["streamable-http", "sse"]
    url: str = Field(max_length=2000)
    headers: list[KeyValueInput] = Field(default_factory=list)
    variables: dict[str, Input] = Field(default_factory=dict)


class OAuthProvider(_ServerJsonModel):
    """How a per-user server's users sign in: the provider's public side, the same for every
    workspace. A workspace registers its own OAuth client (id and secret) with the provider and
    gives it to berth (`PUT /api/shared-tools/:id/oauth/client`), possibly with other endpoints
    (a self-hosted provider); app/oauth/provider.py checks the whole."""

    authorization_endpoint: str | None = None
    token_endpoint: str | None = None
    userinfo_endpoint: str | None = None
    revocation_endpoint: str | None = None
    issuer: str | None = None
    jwks_uri: str | None = None
    scopes: list[str] = Field(default_factory=list)
    token_endpoint_auth_method: Literal["client_secret_basic", "client_secret_post"] = "client_secret_basic"
    extra_authorize_params: dict[str, str] = Field(default_factory=dict)
    token_input: str = Field(min_length=1, description="the server input the user's access token fills "
                                                       "(a header variable or an environment variable)")


class BerthCatalogMeta(_ServerJsonModel):
    tags: list[str] = Field(default_factory=list)
    needs_network: bool = False  # its sandbox needs egress to work
    per_user: bool = False  # each user connects their own account
    oauth: OAuthProvider | None = None  # how they do, for a per-user server signed into with OAuth


class ServerDocument(_ServerJsonModel):
    """One `server.json` (schema 2025-09-29)."""

    name: str = Field(min_length=3, max_length=200, pattern=r"^[a-zA-Z0-9.-]+/[a-zA-Z0-9._-]+$")
    title: str | None = None
    description: str
    version: str
    repository: Repository | None = None
    website_url: str | None = None
    packages: list[PackageSpec] = Field(default_factory=list)
    remotes: list[Remote] = Field(default_factory=list)
    meta: dict[str, Any] = Field(default_factory=dict, alias="_meta")

    @property
    def berth(self) -> BerthCatalogMeta:
        return BerthCatalogMeta.model_validate(self.meta.get(BERTH_META, {}))

    @property
    def display_name(self) -> str:
        return self.title or self.name.rsplit("/", 1)[-1]

    def document(self) -> dict[str, Any]:
        """As `server.json` again (camelCase, only what is set)."""
        return self.model_dump(mode="json", by_alias=True, exclude_none=True)


class CatalogEntry(_ServerJsonModel):
    """What a catalog lists, whatever its kind; `document` is the kind's own record (a
    ServerDocument for MCP servers, a ModelDocument (app.catalog.models) for models)."""

    kind: Literal["mcp_server", "model"]
    id: str
    title: str
    description: str
    version: str
    tags: list[str]
    document: ServerDocument | ModelDocument


def server_entry(document: ServerDocument) -> CatalogEntry:
    return CatalogEntry(kind="mcp_server", id=document.name, title=document.display_name,
                        description=document.description, version=document.version, tags=document.berth.tags,
                        document=document)


def load_documents(directory: Path, model: type[Model]) -> list[Model]:
    """Every `*.json` in `directory` as `model`, in file-name order; a malformed file is an error
    naming it (the curated catalog is checked by the tests, so this is a packaging mistake)."""
    documents = []
    for path in sorted(directory.glob("*.json")):
        try:
            documents.append(model.model_validate(json.loads(path.read_text())))
        except ValueError as error:
            raise ValueError(f"catalog document {path.name} is invalid: {error}") from error
    return documents


@functools.cache
def curated_servers() -> tuple[CatalogEntry, ...]:
    """The MCP servers berth ships, as catalog entries (read once per process)."""
    return tuple(server_entry(document) for document in load_documents(CURATED_SERVERS_DIR, ServerDocument))


def server_json_errors(document: Any) -> list[str]:
    """Where `document` breaks the server.json schema (empty when valid): for documents from
    a registry, before they are stored."""
    import jsonschema  # only the callers that validate pay for the import

    validator = jsonschema.Draft7Validator(_server_schema(), format_checker=jsonschema.Draft7Validator.FORMAT_CHECKER)
    errors = sorted(validator.iter_errors(document), key=lambda error: str(list(error.absolute_path)))
    return [f"{'/'.join(map(str, error.absolute_path)) or '(document)'}: {_explain(error)}" for error in errors]


def _explain(error: Any) -> str:
    if error.validator == "not":  # the schema's only `not` says what a version may not be
        return f"{error.instance!r} is not one exact version (no ranges, wildcards or 'latest')"
    return error.message


@functools.cache
def _server_schema() -> dict:
    return json.loads(SERVER_SCHEMA_PATH.read_text())

