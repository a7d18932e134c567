"""Installations: a marketplace entry set up for a workspace (or one user of it), with its
configuration, and the rules that turn a `server.json`'s declared inputs and a user's values
into what runs.

What a server takes is declared in its `server.json`: a package's environment variables and
arguments, a remote's headers and URL variables, each perhaps required, secret, defaulted or
limited to choices; a `value` with `{curly}` names takes its `variables` instead. An
installation's configuration is one flat map from those inputs' names to values: the values of
secret inputs are sealed (never stored in clear, shown, logged or put in a job's payload), the
others stored as given. Values are checked here, before anything is stored.

Secrets reach a server only as environment variables: a secret command-line argument would be on
the job's payload and in `ps`, so an entry that needs one is refused.
"""

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from app.contract.packages import Argument, Input, KeyValueInput, PackageSpec

InputKind = Literal["env", "argument", "header", "url"]
InstallationKind = Literal["package", "remote"]
InstallationState = Literal["ready", "needs_oauth"]
INSTALLATION_LABEL = "installation"  # the label naming the installation a sandbox serves
_PLACEHOLDER = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)\}")
VALUE_MAX_CHARS = 4000
CONFIG_MAX_CHARS = 32_000  # all values together: an installation is one table item


class ConfigProblem(ValueError):
    """A configuration that cannot be used; the message names the input and says why."""


@dataclass(frozen=True, slots=True, kw_only=True)
class ConfigInput:
    """One value an installation takes."""

    name: str
    kind: InputKind
    description: str = ""
    required: bool = False
    secret: bool = False
    default: str | None = None
    choices: tuple[str, ...] = ()
    format: str = "string"

    @property
    def needed(self) -> bool:
        """Required, with no default to fall back on."""
        return self.required and self.default is None


@dataclass(frozen=True, slots=True, kw_only=True)
class InstalledFile:
    name: str
    size_bytes: int
    sha256: str
    uploaded_at: str


@dataclass(frozen=True, slots=True, kw_only=True)
class Installation:
    installation_id: str
    workspace_id: str
    entry_id: str
    entry_version: str
    origin: str
    title: str
    kind: InstallationKind
    target: dict[str, Any]  # the package (a server.json `packages[]` item) or remote it runs, as installed
    config: dict[str, str] = field(default_factory=dict)  # the values of inputs that are not secret
    secret_hints: dict[str, str] = field(default_factory=dict)  # secret inputs given: name → a hint, never the value
    secrets: str | None = None  # the secret values, sealed (app.services.secrets)
    pending: list[str] = field(default_factory=list)  # required secrets the user's OAuth flow is to supply
    scope: Literal["workspace", "user"] = "workspace"
    user_id: str | None = None  # whose it is, for a per-user entry
    needs_network: bool = False
    sandbox_id: str | None = None  # the mcp.run job serving it, while one does
    files: list[InstalledFile] = field(default_factory=list)
    last_error: str | None = None  # why its server last failed to start
    created_at: str
    created_by: str = ""
    updated_at: str
    version: int = 1  # the item's, for conditional updates

    @property
    def state(self) -> InstallationState:
        """What comes next: ready to use, or a user's OAuth sign-in to supply `pending`."""
        return "needs_oauth" if self.pending else "ready"

    def usable_by(self, user_id: str | None) -> bool:
        """A workspace's installation serves the whole workspace; a user's, that user alone (it
        holds their credentials)."""
        return self.scope == "workspace" or (user_id is not None and user_id == self.user_id)


def file_key(workspace_id: str, installation_id: str, name: str) -> str:
    """Where an installation's file is kept in the files bucket."""
    return f"installations/{workspace_id}/{installation_id}/{name}"


# --- the inputs a server declares ----------------------------------------------------------------


def _input(name: str, kind: InputKind, declared: Input, *, secret: bool = False) -> ConfigInput:
    return ConfigInput(name=name, kind=kind, description=declared.description, required=declared.is_required,
                       secret=declared.is_secret or secret, default=declared.default,
                       choices=tuple(declared.choices), format=declared.format)


def _templated(name: str, kind: InputKind, declared: Input) -> list[ConfigInput]:
    """The inputs behind a declared value: its `{variables}`, none for a fixed value, the value
    itself when none is given."""
    if declared.value is None:
        return [_input(name, kind, declared)]
    return [_input(variable, kind, declared.variables.get(variable, Input()), secret=declared.is_secret)
            for variable in dict.fromkeys(_PLACEHOLDER.findall(declared.value))]


def argument_name(argument: Argument) -> str:
    """How a user names an argument: its value hint, else its flag without dashes."""
    return argument.value_hint or (argument.name or "").lstrip("-")


def package_inputs(spec: PackageSpec) -> list[ConfigInput]:
    inputs = [found for variable in spec.environment_variables for found in _templated(variable.name, "env", variable)]
    for argument in spec.package_arguments:
        found = _templated(argument_name(argument), "argument", argument)
        secret = [each.name for each in found if each.secret]
        if secret:
            raise ConfigProblem(f"{spec.describe()} takes the secret {', '.join(secret)} as a command-line argument; "
                                "berth passes secrets to servers only as environment variables")
        inputs += found
    return _unique(inputs)


def remote_inputs(headers: Iterable[KeyValueInput], url_variables: Mapping[str, Input]) -> list[ConfigInput]:
    inputs = [found for header in headers for found in _templated(header.name, "header", header)]
    inputs += [_input(name, "url", declared) for name, declared in url_variables.items()]
    return _unique(inputs)


def _unique(inputs: list[ConfigInput]) -> list[ConfigInput]:
    """One input per name (a variable shared by two values is one input)."""
    seen: dict[str, ConfigInput] = {}
    for each in inputs:
        held = seen.get(each.name)
        if held is not None and held.secret != each.secret:
            raise ConfigProblem(f"{each.name} is declared both secret and not secret")
        seen.setdefault(each.name, each)
    return list(seen.values())


# --- values ------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ResolvedConfig:
    public: dict[str, str]  # stored as given
    secret: dict[str, str]  # to seal
    pending: list[str]  # required secrets not given, left for the user's OAuth flow


def resolve_config(inputs: list[ConfigInput], changes: Mapping[str, str | None], *,
                   public: Mapping[str, str] | None = None, secret: Mapping[str, str] | None = None,
                   per_user: bool = False) -> ResolvedConfig:
    """The configuration after `changes` (a value sets, None removes) over what is held. For a
    per-user entry, required secrets may be missing: they are `pending` (the user's sign-in
    supplies them); any other required input without a value or default is a ConfigProblem."""
    by_name = {each.name: each for each in inputs}
    unknown = sorted(set(changes) - set(by_name))
    if unknown:
        takes = ", ".join(sorted(by_name)) or "nothing"
        raise ConfigProblem(f"unknown setting{'s' if len(unknown) > 1 else ''} {', '.join(unknown)}: "
                            f"this server takes {takes}")
    clear, sealed = dict(public or {}), dict(secret or {})
    for name, value in changes.items():
        clear.pop(name, None)
        sealed.pop(name, None)
        if value is not None:
            (sealed if by_name[name].secret else clear)[name] = _checked(by_name[name], value)
    if sum(len(value) for value in (*clear.values(), *sealed.values())) > CONFIG_MAX_CHARS:
        raise ConfigProblem(f"the values together hold more than {CONFIG_MAX_CHARS} characters")
    missing = [each for each in inputs if each.needed and each.name not in clear and each.name not in sealed]
    pending = [each.name for each in missing if per_user and each.secret]
    absent = [each.name for each in missing if each.name not in pending]
    if absent:
        raise ConfigProblem(f"required setting{'s' if len(absent) > 1 else ''} not given: {', '.join(absent)}")
    return ResolvedConfig(clear, sealed, pending)


def _checked(declared: ConfigInput, value: str) -> str:
    if "\x00" in value or len(value) > VALUE_MAX_CHARS:
        raise ConfigProblem(f"{declared.name}: a value holds no NUL and at most {VALUE_MAX_CHARS} characters")
    if declared.choices and value not in declared.choices:
        raise ConfigProblem(f"{declared.name} must be one of {', '.join(declared.choices)}")
    if declared.format == "number":
        try:
            float(value)
        except ValueError:
            raise ConfigProblem(f"{declared.name} must be a number") from None
    if declared.format == "boolean" and value not in ("true", "false"):
        raise ConfigProblem(f"{declared.name} must be true or false")
    return value


def secret_hint(value: str) -> str:
    """What a view shows of a secret: its last four characters when it is long enough that they
    give nothing away, else only that it is set."""
    return f"…{value[-4:]}" if len(value) >= 16 else "set"


# --- what runs -----------------------------------------------------------------------------------


def _filled(declared: Input, name: str, values: Mapping[str, str]) -> str | None:
    """A declared value with the user's values in: its `{variables}` substituted (or their
    defaults), or the input's own value; None when nothing gives one."""
    if declared.value is None:
        return values.get(name)
    def one(match: re.Match) -> str:
        variable = match.group(1)
        given = values.get(variable, declared.variables.get(variable, Input()).default)
        return match.group(0) if given is None else given
    return _PLACEHOLDER.sub(one, declared.value)


@dataclass(frozen=True, slots=True)
class PackageLaunch:
    package: PackageSpec  # with the values that are not secret in place
    secret_env: dict[str, str]  # environment variables that hold secrets, delivered sealed


def package_launch(spec: PackageSpec, public: Mapping[str, str], secret: Mapping[str, str]) -> PackageLaunch:
    """The package as the sandbox job carries it, and the secret environment beside it."""
    values = {**public, **secret}
    secret_names = {each.name for each in package_inputs(spec) if each.secret}
    environment, secret_env = [], {}
    for variable in spec.environment_variables:
        filled = _filled(variable, variable.name, values)
        names = set(_PLACEHOLDER.findall(variable.value)) if variable.value is not None else {variable.name}
        if filled is not None and names & secret_names:
            secret_env[variable.name] = filled
            filled = None
        environment.append(variable.model_copy(update={"value": filled}))
    arguments = [argument.model_copy(update={"value": _filled(argument, argument_name(argument), values)})
                 for argument in spec.package_arguments]
    package = spec.model_copy(update={"environment_variables": environment, "package_arguments": arguments})
    return PackageLaunch(package, secret_env)


def remote_headers(headers: Iterable[KeyValueInput], values: Mapping[str, str]) -> dict[str, str]:
    """The headers a remote server is called with."""
    resolved = {}
    for header in headers:
        filled = _filled(header, header.name, values)
        if filled is None:
            filled = header.default
        if filled is not None:
            resolved[header.name] = filled
    return resolved


def remote_url(url: str, variables: Mapping[str, Input], values: Mapping[str, str]) -> str:
    """The remote's URL with its `{variables}` filled in; ConfigProblem for one left unfilled."""
    filled = _filled(Input(value=url, variables=dict(variables)), "", values)
    left = _PLACEHOLDER.findall(filled or "")
    if left:
        raise ConfigProblem(f"the server's URL needs {', '.join(left)}")
    return filled or url
