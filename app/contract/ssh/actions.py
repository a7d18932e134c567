"""Actions: named, allow-listed commands with typed parameters, and how one is rendered.

An action's command is an argv template: a list of words, each literal text with `{param}`
placeholders (`{{` and `}}` for literal braces), never a shell string. `render` validates the
parameters before anything connects, puts each value into its word and quotes every word for the
remote POSIX shell that sshd hands the command to, so a value is always part of exactly one
argument: `;`, `$(...)`, backticks, newlines, quotes and globs in it are inert. Quoting cannot
stop a *program* from reading a value as an option (`--output=/etc/passwd`), so a word that
begins with a value may not begin with `-` unless a literal `--` comes before it in the command
(POSIX utilities stop reading options there) or the parameter explicitly allows a leading dash.

The remote account's login shell must be a POSIX shell (sh, bash, dash, ksh, zsh): sshd runs the
command with it and the quoting is its syntax. The command begins with `exec` so that the program
replaces the shell, and a signal sent over the channel (a cancel) reaches the program itself.
"""

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Annotated, Any, Literal, NamedTuple

from pydantic import Field, PrivateAttr, field_validator, model_validator

from app.contract.ssh.hosts import Document, Name, Targeted

REDACTED = "[redacted]"
MAX_COMMAND_BYTES = 65536  # well under the 256 KB SSH packet every server accepts
ParameterName = Annotated[str, Field(pattern=r"^[A-Za-z_][A-Za-z0-9_]{0,63}$")]
Word = Annotated[str, Field(max_length=4096)]
_CANONICAL_INTEGER = re.compile(r"-?(0|[1-9][0-9]{0,18})")
_TEMPLATE_TOKEN = re.compile(r"\{\{|\}\}|\{([A-Za-z_][A-Za-z0-9_]{0,63})\}|[{}]")


class ParametersInvalid(ValueError):
    """Parameters refused before anything connected; `problems` maps each parameter to why.
    Messages never quote the value (it may be secret, or an injection attempt)."""

    def __init__(self, problems: dict[str, str]):
        self.problems = problems
        super().__init__("; ".join(f"{name}: {problem}" for name, problem in problems.items()))


# --- typed parameters ---------------------------------------------------------------------------


class _Parameter(Document):
    description: str = Field(default="", max_length=1000)
    secret: bool = False  # redacted from every audit view of the command and its parameters

    def check(self, value: Any) -> str | int:
        """The value as this type holds it, or ValueError saying what is wrong (without the value)."""
        raise NotImplementedError

    @property
    def leading_dash_allowed(self) -> bool:
        raise NotImplementedError

    @model_validator(mode="after")
    def _default_is_valid(self) -> "_Parameter":
        default = getattr(self, "default", None)
        if default is not None:
            if self.secret:
                raise ValueError("a secret parameter has no default (it would sit in the inventory and its listings)")
            try:
                self.check(default)
            except ValueError as error:
                raise ValueError(f"default {error}") from None
        return self


class EnumParameter(_Parameter):
    type: Literal["enum"]
    values: list[Annotated[str, Field(min_length=1, max_length=1000)]] = Field(min_length=1, max_length=500)
    default: str | None = None

    @field_validator("values")
    @classmethod
    def _distinct_values(cls, values: list[str]) -> list[str]:
        if len(set(values)) != len(values):
            raise ValueError("values must be distinct")
        if any("\0" in value for value in values):
            raise ValueError("values must not contain NUL characters")
        return values

    def check(self, value: Any) -> str:
        if not isinstance(value, str) or value not in self.values:
            raise ValueError(f"must be one of: {', '.join(self.values)}")
        return value

    @property
    def leading_dash_allowed(self) -> bool:
        return True  # the operator wrote every value


class IntegerParameter(_Parameter):
    type: Literal["integer"]
    minimum: int
    maximum: int
    default: int | None = None
    allow_leading_dash: bool = False  # a negative value where the program reads options

    @model_validator(mode="before")
    @classmethod
    def _range_is_ordered(cls, data: Any) -> Any:
        if isinstance(data, dict) and isinstance(data.get("minimum"), int) and isinstance(data.get("maximum"), int):
            if data["minimum"] > data["maximum"]:
                raise ValueError("minimum must not exceed maximum")
        return data

    def check(self, value: Any) -> int:
        # A decimal string is taken as the number it spells (MCP clients often send numbers as
        # text); only the canonical spelling, so " 5", "05", "+5" and "5\n" are refused.
        if isinstance(value, str) and _CANONICAL_INTEGER.fullmatch(value):
            value = int(value)
        if isinstance(value, bool) or not isinstance(value, int):
            raise ValueError("must be an integer")
        if not self.minimum <= value <= self.maximum:
            raise ValueError(f"must be between {self.minimum} and {self.maximum}")
        return value

    @property
    def leading_dash_allowed(self) -> bool:
        return self.allow_leading_dash


class StringParameter(_Parameter):
    type: Literal["string"]
    pattern: str = Field(min_length=1, max_length=1000)  # a Python regular expression the whole value must match
    max_length: int = Field(default=256, ge=1, le=4096)
    default: str | None = None
    allow_leading_dash: bool = False

    @field_validator("pattern")
    @classmethod
    def _compiles(cls, pattern: str) -> str:
        try:
            re.compile(pattern)
        except re.error as error:
            raise ValueError(f"pattern is not a valid regular expression: {error}") from None
        return pattern

    def check(self, value: Any) -> str:
        if not isinstance(value, str):
            raise ValueError("must be a string")
        if len(value) > self.max_length:
            raise ValueError(f"must be at most {self.max_length} characters")
        if "\0" in value:
            raise ValueError("must not contain NUL characters")  # no argv can carry one
        if re.fullmatch(self.pattern, value) is None:
            raise ValueError(f"must match the pattern {self.pattern}")
        return value

    @property
    def leading_dash_allowed(self) -> bool:
        return self.allow_leading_dash


Parameter = Annotated[EnumParameter | IntegerParameter | StringParameter, Field(discriminator="type")]


# --- the command template -----------------------------------------------------------------------


class Piece(NamedTuple):
    text: str  # literal text, or a parameter's name
    parameter: bool


def parse_word(word: str) -> tuple[Piece, ...]:
    """A template word as literal text and placeholders; ValueError for a stray brace."""
    pieces: list[Piece] = []
    literal, position = "", 0
    for token in _TEMPLATE_TOKEN.finditer(word):
        literal += word[position:token.start()]
        position = token.end()
        if token.group(1):
            if literal:
                pieces.append(Piece(literal, False))
            pieces.append(Piece(token.group(1), True))
            literal = ""
        elif token.group(0) in ("{{", "}}"):
            literal += token.group(0)[0]
        else:
            raise ValueError(f"unmatched {token.group(0)!r} at offset {token.start()}: a placeholder is "
                             "{name} (a parameter name), and {{ or }} writes a literal brace")
    literal += word[position:]
    if literal:
        pieces.append(Piece(literal, False))
    return tuple(pieces)


def shell_quote(word: str) -> str:
    """One word for a POSIX shell, always single-quoted (even `a=b` or `~`, which would otherwise
    mean something unquoted); a single quote inside is closed, escaped and reopened."""
    return "'" + word.replace("'", "'\\''") + "'"


class SshAction(Targeted):
    name: Name
    description: str = Field(default="", max_length=2000)
    command: list[Word] = Field(min_length=1, max_length=200)  # argv template; the first word is the program
    parameters: dict[ParameterName, Parameter] = Field(default_factory=dict, max_length=50)
    timeout_seconds: int = Field(default=60, ge=1, le=3600)
    # Kept of stdout, and of stderr. The result is stored with the job and in its final event
    # (items of at most 400 KB), so the cap stays well under that for both streams together.
    output_cap_bytes: int = Field(default=16384, ge=256, le=32768)

    _template: tuple[tuple[Piece, ...], ...] = PrivateAttr(default=())

    @model_validator(mode="after")
    def _template_is_sound(self) -> "SshAction":
        template = []
        for index, word in enumerate(self.command):
            if "\0" in word:
                raise ValueError(f"command[{index}] contains a NUL character")
            try:
                template.append(parse_word(word))
            except ValueError as error:
                raise ValueError(f"command[{index}]: {error}") from None
        if not template[0] or any(piece.parameter for piece in template[0]):
            raise ValueError("command[0] is the program: literal text, without placeholders")
        used = {piece.text for pieces in template for piece in pieces if piece.parameter}
        if unknown := sorted(used - set(self.parameters)):
            raise ValueError(f"the command uses undeclared parameters: {', '.join(unknown)}")
        if unused := sorted(set(self.parameters) - used):
            raise ValueError(f"parameters declared but not used in the command: {', '.join(unused)}")
        self._template = tuple(template)
        return self

    def listing(self) -> dict[str, Any]:
        return self.model_dump()


# --- rendering ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class RenderedCommand:
    argv: tuple[str, ...] = field(repr=False)  # may carry secret values
    command: str = field(repr=False)  # exactly what the remote shell receives
    audit_command: str  # the command with every word that carries a secret replaced by [redacted]
    audit_parameters: dict[str, Any]


def audit_view(action: SshAction | None, parameters: Mapping[str, Any]) -> dict[str, Any]:
    """Parameters as an audit record keeps them, valid or not: secret ones redacted, long values
    cut, and for an unknown action (whose secrets nobody knows) no values at all."""
    view: dict[str, Any] = {}
    for name, value in list(parameters.items())[:100]:
        name = str(name)[:100]
        spec = action.parameters.get(name) if action else None
        if action is None or (spec is not None and spec.secret):
            view[name] = REDACTED
        elif isinstance(value, bool | int | float) or value is None:
            view[name] = value
        elif isinstance(value, str):
            view[name] = value if len(value) <= 256 else value[:256] + "…"
        else:
            view[name] = f"<{type(value).__name__}>"
    return view


def render(action: SshAction, parameters: Mapping[str, Any]) -> RenderedCommand:
    """The exact remote command for these parameters, or ParametersInvalid listing every problem."""
    problems = {str(name): "not a parameter of this action" for name in parameters if name not in action.parameters}
    values: dict[str, str | int] = {}
    for name, spec in action.parameters.items():
        value = parameters.get(name, getattr(spec, "default", None))
        if value is None:
            problems[name] = "is required"
            continue
        try:
            values[name] = spec.check(value)
        except ValueError as error:
            problems[name] = str(error)
    end_of_options = next((i for i, word in enumerate(action.command) if i > 0 and word == "--"), None)
    argv, audit_words = [], []
    for index, pieces in enumerate(action._template):
        if any(p.parameter and p.text not in values for p in pieces):
            continue  # a value already refused: nothing to render, the problems are raised below
        word = "".join(str(values[p.text]) if p.parameter else p.text for p in pieces)
        used = [p.text for p in pieces if p.parameter]
        in_option_position = end_of_options is None or index < end_of_options
        if word.startswith("-") and pieces[0].parameter and in_option_position and not all(
                action.parameters[name].leading_dash_allowed for name in used):
            problems[pieces[0].text] = ("must not begin with '-' here: the program would read it as an option "
                                        "(the action's command needs a '--' before it, or the parameter must "
                                        "allow a leading dash)")
        argv.append(word)
        secret = any(action.parameters[name].secret for name in used)
        audit_words.append(REDACTED if secret else shell_quote(word))
    if problems:
        raise ParametersInvalid(problems)
    command = "exec " + " ".join(shell_quote(word) for word in argv)
    if len(command.encode()) > MAX_COMMAND_BYTES:
        raise ParametersInvalid({"(command)": f"the rendered command is over {MAX_COMMAND_BYTES} bytes"})
    return RenderedCommand(argv=tuple(argv), command=command, audit_command="exec " + " ".join(audit_words),
                           audit_parameters=audit_view(action, values))
