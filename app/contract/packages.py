"""An MCP server as a package, the way the MCP registry's `server.json` describes it
(`packages[]`, schema 2025-09-29), and the familiar start commands that mean the same.

A sandbox job may carry `{"package": {...}}` beside (or instead of) `start_command`; the worker
installs the package into its cache and runs its entry point. `npx -y NAME[@VERSION] [ARGS]` and
`uvx NAME[==VERSION] [ARGS]` (also `uvx NAME@VERSION`) parse to the same `PackageSpec`, so both
spellings take one path.

Names and versions are checked here, strictly, for the registries a worker installs from (npm,
PyPI): an installer receives them as argv items, never through a shell, but a name such as
`--registry=…` or `../x` must still never reach its command line. Only exact versions are
accepted (`1.2.3`, never `^1.2` or `latest`); a spec without a version means "the latest",
which the worker resolves to an exact version before it installs. Other registry types (oci,
nuget, mcpb, …) pass with a loose check: the worker refuses them with its own message.

Argument and environment values that depend on the user (a `valueHint`, `{variables}`) are
resolved by the API into `value` before dispatch; the worker uses `value`, else `default`.
"""

import re
import shlex
from collections.abc import Mapping
from typing import Literal

from pydantic import ConfigDict, Field, ValidationError, field_validator, model_validator
from pydantic.alias_generators import to_camel
from pydantic.config import JsonDict

from app.contract.bodies import JsonBody

NPM = "npm"
PYPI = "pypi"
OCI = "oci"
# What the registry documents; a worker installs only NPM and PYPI itself.
KNOWN_REGISTRY_TYPES = (NPM, PYPI, OCI, "nuget", "mcpb")

_NPM_NAME = re.compile(r"(?:@[a-z0-9][a-z0-9._~-]*/)?[a-z0-9][a-z0-9._~-]*")
_NPM_NAME_MAX = 214
# Exact semver: MAJOR.MINOR.PATCH[-PRERELEASE][+BUILD].
_NPM_VERSION = re.compile(
    r"(?:0|[1-9][0-9]*)\.(?:0|[1-9][0-9]*)\.(?:0|[1-9][0-9]*)"
    r"(?:-[0-9A-Za-z-]+(?:\.[0-9A-Za-z-]+)*)?(?:\+[0-9A-Za-z-]+(?:\.[0-9A-Za-z-]+)*)?"
)
_PYPI_NAME = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9._-]*[A-Za-z0-9])?")
_PYPI_NAME_MAX = 200
# PEP 440 versions as PyPI accepts them, exact only (no wildcard, no leading `v`).
_PYPI_VERSION = re.compile(
    r"(?:[0-9]+!)?[0-9]+(?:\.[0-9]+)*"
    r"(?:[-_.]?(?:a|b|c|rc|alpha|beta|pre|preview)[-_.]?[0-9]*)?"
    r"(?:-[0-9]+|[-_.]?(?:post|rev|r)[-_.]?[0-9]*)?"
    r"(?:[-_.]?dev[-_.]?[0-9]*)?"
    r"(?:\+[a-z0-9]+(?:[-_.][a-z0-9]+)*)?",
    re.IGNORECASE,
)
_VERSION_MAX = 100
# No white space (as Python's `\s` and `str.isspace` see it, spelled out so JSON Schema reads it alike)
# and no control characters.
_OTHER_IDENTIFIER = re.compile(r"[^\x00-\x20\x7f\x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]{1,500}")
_FLAG = re.compile(r"--?[A-Za-z0-9][A-Za-z0-9_.-]*")
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
# `npx` options that change nothing about what runs; every other option is refused.
_NPX_YES = ("-y", "--yes")


class PackageSpecError(ValueError):
    """A package spec or start command that cannot be used; the message says why."""


class _RegistryModel(JsonBody):
    # camelCase on the wire, as in server.json; fields a later schema adds are ignored rather
    # than failing every payload built from a newer registry document.
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="ignore", frozen=True)


_NO_NUL: JsonDict = {"pattern": "^[^\\x00]*$"}  # what `_no_nul` requires, for the OpenAPI document


def _no_nul(value: str | None) -> str | None:
    if value is not None and "\x00" in value:
        raise ValueError("values cannot contain NUL characters")
    return value


class Input(_RegistryModel):
    description: str = ""
    is_required: bool = False
    is_secret: bool = False
    format: Literal["string", "number", "boolean", "filepath"] = "string"
    value: str | None = Field(default=None, json_schema_extra=_NO_NUL)
    default: str | None = Field(default=None, json_schema_extra=_NO_NUL)
    placeholder: str | None = None
    choices: list[str] = Field(default_factory=list)
    # What the `{curly}` names in `value` stand for (`"Bearer {token}"`); the API substitutes them.
    variables: dict[str, "Input"] = Field(default_factory=dict, max_length=20)

    _check_value = field_validator("value", "default")(_no_nul)

    @property
    def effective_value(self) -> str | None:
        return self.value if self.value is not None else self.default


class Argument(Input):
    """A `positional` value, or a `named` flag (`--port 8080`: the flag and its value)."""

    # `_check_shape`, stated for the OpenAPI document.
    model_config = ConfigDict(json_schema_extra={"anyOf": [
        {"required": ["type", "name"],
         "properties": {"type": {"const": "named"}, "name": {"type": "string", "pattern": f"^(?:{_FLAG.pattern})$"}}},
        {"required": ["type"], "properties": {"type": {"const": "positional"}}, "anyOf": [
            {"required": ["value"], "properties": {"value": {"type": "string"}}},
            {"required": ["valueHint"], "properties": {"valueHint": {"type": "string"}}}]},
    ]})

    type: Literal["positional", "named"]
    name: str | None = None
    value_hint: str | None = None
    is_repeated: bool = False

    @model_validator(mode="after")
    def _check_shape(self) -> "Argument":
        if self.type == "named" and not (self.name and _FLAG.fullmatch(self.name)):
            raise ValueError(f"a named argument needs a flag name such as --port, got {self.name!r}")
        if self.type == "positional" and self.value is None and self.value_hint is None:
            raise ValueError("a positional argument needs a value or a valueHint")
        return self

    @property
    def label(self) -> str:
        return self.name or self.value_hint or "(positional)"


class KeyValueInput(Input):
    """An environment variable of a package, or a header of a remote."""

    name: str = Field(min_length=1, max_length=200, pattern=r"^[A-Za-z0-9_][A-Za-z0-9_.-]*$")


class PackageTransport(_RegistryModel):
    type: Literal["stdio", "streamable-http", "sse"] = "stdio"
    url: str | None = Field(default=None, max_length=2000)  # a template such as http://localhost:{PORT}/mcp
    headers: list[KeyValueInput] = Field(default_factory=list)


def _json_pattern(pattern: re.Pattern[str]) -> str:
    """`pattern` as an anchored JSON Schema (ECMA) pattern that matches what `fullmatch` does; the
    one flag used here, IGNORECASE, spelled out: `a-z` ranges take `A-Z` too, letters outside a
    character class become `[xX]`."""
    text = pattern.pattern
    if pattern.flags & re.IGNORECASE:
        spelled, in_class, escaped = [], False, False
        for character in text.replace("a-z", "a-zA-Z"):
            if in_class or escaped or not (character.isascii() and character.isalpha()):
                spelled.append(character)
            else:
                spelled.append(f"[{character.lower()}{character.upper()}]")
            in_class = (in_class or (character == "[" and not escaped)) and not (character == "]" and not escaped)
            escaped = character == "\\" and not escaped
        text = "".join(spelled)
    return f"^(?:{text})$"


def _names(registry: JsonDict, identifier: re.Pattern[str], identifier_max: int, version: re.Pattern[str]) -> JsonDict:
    return {**registry, "properties": {
        **registry["properties"],  # type: ignore[dict-item]
        "identifier": {"pattern": _json_pattern(identifier), "maxLength": identifier_max},
        "version": {"pattern": _json_pattern(version), "maxLength": _VERSION_MAX}}}


# What `_check_names` requires, stated for the OpenAPI document: names and exact versions by
# registry, and environment variables named as a shell names them.
_PACKAGE_NAMES: JsonDict = {"allOf": [{"properties": {"environmentVariables": {"items": {"properties": {
    "name": {"pattern": _json_pattern(_ENV_NAME)}}}}}}, {"anyOf": [
    _names({"properties": {"registryType": {"const": NPM}}}, _NPM_NAME, _NPM_NAME_MAX, _NPM_VERSION),
    _names({"properties": {"registryType": {"const": PYPI}}}, _PYPI_NAME, _PYPI_NAME_MAX, _PYPI_VERSION),
    {"properties": {"registryType": {"not": {"enum": [NPM, PYPI]}},
                    "identifier": {"pattern": _json_pattern(_OTHER_IDENTIFIER)},
                    "version": {"pattern": _json_pattern(_OTHER_IDENTIFIER),
                                "not": {"pattern": "^[Ll][Aa][Tt][Ee][Ss][Tt]$"}}}},
]}]}


class PackageSpec(_RegistryModel):
    """One entry of `server.json`'s `packages[]`."""

    model_config = ConfigDict(json_schema_extra=_PACKAGE_NAMES)

    registry_type: str = Field(min_length=1, max_length=20, pattern=r"^[a-z0-9-]+$")
    identifier: str = Field(min_length=1, max_length=500)
    version: str | None = Field(default=None, min_length=1, max_length=255)  # None: the latest
    registry_base_url: str | None = Field(default=None, max_length=500)
    file_sha256: str | None = Field(default=None, pattern=r"^[a-f0-9]{64}$")
    runtime_hint: str | None = Field(default=None, max_length=50)
    transport: PackageTransport = Field(default_factory=PackageTransport)
    runtime_arguments: list[Argument] = Field(default_factory=list, max_length=50)
    package_arguments: list[Argument] = Field(default_factory=list, max_length=100)
    environment_variables: list[KeyValueInput] = Field(default_factory=list, max_length=100)

    @model_validator(mode="after")
    def _check_names(self) -> "PackageSpec":
        check_identifier(self.registry_type, self.identifier)
        if self.version is not None:
            check_version(self.registry_type, self.version)
        for variable in self.environment_variables:
            if not _ENV_NAME.fullmatch(variable.name):
                raise PackageSpecError(f"not an environment variable name: {variable.name!r}")
        return self

    @property
    def canonical_name(self) -> str:
        """The name as the registry indexes it: PyPI folds case and runs of `-_.` (PEP 503)."""
        if self.registry_type == PYPI:
            return re.sub(r"[-_.]+", "-", self.identifier).lower()
        return self.identifier

    def describe(self) -> str:
        return f"{self.registry_type} package {self.identifier}" + (f"@{self.version}" if self.version else "")

    def command_arguments(self) -> list[str]:
        """The arguments after the entry point, from `packageArguments` in order."""
        argv: list[str] = []
        for argument in self.package_arguments:
            value = argument.effective_value
            if value is None:
                if argument.is_required:
                    raise PackageSpecError(f"package argument {argument.label} needs a value")
                continue
            argv += [argument.name, value] if argument.type == "named" and argument.name else [value]
        return argv

    def environment(self, supplied: Mapping[str, str]) -> dict[str, str]:
        """The server's environment: declared defaults, then `supplied`, then fixed values (a
        declared `value` is not the user's to change); every required variable must be set."""
        environment = {v.name: v.default for v in self.environment_variables if v.default is not None}
        environment.update(supplied)
        environment.update({v.name: v.value for v in self.environment_variables if v.value is not None})
        missing = [v.name for v in self.environment_variables if v.is_required and v.name not in environment]
        if missing:
            raise PackageSpecError(f"required environment variable{'s' if len(missing) > 1 else ''} not set: "
                                   f"{', '.join(missing)}")
        return environment


def check_identifier(registry_type: str, identifier: str) -> None:
    if registry_type == NPM:
        if len(identifier) > _NPM_NAME_MAX or not _NPM_NAME.fullmatch(identifier):
            raise PackageSpecError(f"not a valid npm package name: {identifier!r}")
    elif registry_type == PYPI:
        if len(identifier) > _PYPI_NAME_MAX or not _PYPI_NAME.fullmatch(identifier):
            raise PackageSpecError(f"not a valid PyPI package name: {identifier!r}")
    elif not _OTHER_IDENTIFIER.fullmatch(identifier):
        raise PackageSpecError(f"not a valid package identifier: {identifier!r}")


def check_version(registry_type: str, version: str) -> None:
    pattern = {NPM: _NPM_VERSION, PYPI: _PYPI_VERSION}.get(registry_type)
    if version.lower() == "latest":
        raise PackageSpecError("give an exact version, or none for the latest")
    if pattern is None:
        if not _OTHER_IDENTIFIER.fullmatch(version):
            raise PackageSpecError(f"not a valid version: {version!r}")
    elif len(version) > _VERSION_MAX or not pattern.fullmatch(version):
        raise PackageSpecError(f"not an exact {registry_type} version: {version!r} (ranges and tags are refused)")


# --- start commands ---------------------------------------------------------------------------


def parse_start_command(command: str) -> PackageSpec | None:
    """The package an `npx …` or `uvx …` start command runs; None for any other command.

    Raises PackageSpecError for such a command that is not of the supported forms: options
    other than npx's `-y`, a name or version that is not valid."""
    try:
        argv = shlex.split(command)
    except ValueError as error:
        raise PackageSpecError(f"command cannot be parsed: {error}") from None
    if not argv or argv[0] not in ("npx", "uvx"):
        return None
    runner, rest = argv[0], argv[1:]
    while rest and runner == "npx" and rest[0] in _NPX_YES:
        rest = rest[1:]
    if not rest:
        raise PackageSpecError(f"{runner} names no package")
    token, arguments = rest[0], rest[1:]
    if token.startswith("-"):
        raise PackageSpecError(f"{runner} option {token!r} is not supported: give the package as "
                               + ("NAME[@VERSION]" if runner == "npx" else "NAME[==VERSION]"))
    registry_type, name, version = (NPM, *_split_npm(token)) if runner == "npx" else (PYPI, *_split_pypi(token))
    try:
        return PackageSpec(
            registry_type=registry_type, identifier=name, version=version, runtime_hint=runner,
            package_arguments=[Argument(type="positional", value=argument) for argument in arguments],
        )
    except ValidationError as error:
        raise PackageSpecError(_first_message(error)) from None


def _split_npm(token: str) -> tuple[str, str | None]:
    """`@scope/name@1.2.3` → (`@scope/name`, `1.2.3`); `@latest` means no version."""
    at = token.rfind("@")
    if at <= 0:
        return token, None
    name, version = token[:at], token[at + 1:]
    return name, None if version == "latest" else version


def _split_pypi(token: str) -> tuple[str, str | None]:
    """`name==1.2.3` or `name@1.2.3` → (`name`, `1.2.3`); other specifiers are refused."""
    for separator in ("==", "@"):
        if separator in token:
            name, version = token.split(separator, 1)
            return name, None if version == "latest" else version
    if any(character in token for character in "<>=!~"):
        raise PackageSpecError(f"only an exact version (NAME==VERSION) can be given, not {token!r}")
    return token, None


def _first_message(error: ValidationError) -> str:
    first = error.errors()[0]
    return str(first["ctx"]["error"]) if "error" in first.get("ctx", {}) else first["msg"]


# --- the package cache as a runtime reports it ------------------------------------------------


class CachedPackage(JsonBody):  # strict: a runtime reports it in heartbeats
    registry_type: str = Field(max_length=20)
    identifier: str = Field(max_length=300)
    version: str = Field(max_length=200)
    size_bytes: int = Field(ge=0)
    installed_at: float
    last_used_at: float
    in_use: bool  # a sandbox runs it now: never evicted while so


MAX_REPORTED_PACKAGES = 200  # a heartbeat carries the most recently used this many


class PackageCacheUsage(JsonBody):
    """A runtime's package cache, for `/v1/system/storage`."""

    entries: list[CachedPackage] = Field(default_factory=list, max_length=MAX_REPORTED_PACKAGES)
    total_bytes: int = Field(default=0, ge=0)
    max_bytes: int = Field(default=0, ge=0)
    free_disk_bytes: int = Field(default=0, ge=0)
