"""The SSH inventory document: hosts, the actions that may run on them and the forwards that may be
opened to them, parsed from YAML with every problem reported at its line.

    hosts:
      - name: gpu-1
        address: 10.0.3.17
        user: berth-ops
        labels: [gpu]
        host_key: "10.0.3.17 ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAA..."   # or SHA256:...
        client_key: "secretsmanager:berth/ssh/gpu-1"
    actions:
      - name: tail-log
        command: [tail, -n, "{lines}", --, "{path}"]
        parameters:
          lines: {type: integer, minimum: 1, maximum: 5000, default: 200}
          path: {type: string, pattern: "/var/log/[a-z0-9._/-]+", max_length: 200}
        labels: [gpu]
        timeout_seconds: 20
    forwards:
      - {name: ray-dashboard, target_port: 8265, hosts: [gpu-1]}

Where the text comes from (a file, an S3 object, an SSM parameter) is the API's business.
"""

from typing import Any, Literal

from pydantic import Field, ValidationError, model_validator

from app.contract.ssh.actions import SshAction
from app.contract.ssh.hosts import Document, SshForward, SshHost, Targeted

MAX_INVENTORY_BYTES = 1_048_576


class InventoryInvalid(ValueError):
    """The inventory cannot be used; `problems` says what and where, one line each."""

    def __init__(self, problems: list[str]):
        self.problems = problems
        super().__init__("invalid SSH inventory:\n" + "\n".join(f"  - {problem}" for problem in problems))


class _CrossReferenceProblems(ValueError):
    """Problems between entries (duplicates, names that point nowhere), each with its path."""

    def __init__(self, problems: list[tuple[tuple[str | int, ...], str]]):
        self.problems = problems
        super().__init__("; ".join(f"{_path_text(path)}: {message}" for path, message in problems))


class SshInventory(Document):
    version: Literal[1] = 1
    hosts: list[SshHost] = Field(default_factory=list, max_length=5000)
    actions: list[SshAction] = Field(default_factory=list, max_length=1000)
    forwards: list[SshForward] = Field(default_factory=list, max_length=1000)

    @model_validator(mode="after")
    def _references_resolve(self) -> "SshInventory":
        problems: list[tuple[tuple[str | int, ...], str]] = []
        host_names = {host.name for host in self.hosts}
        host_labels = {label for host in self.hosts for label in host.labels}
        for kind, names in (("hosts", [host.name for host in self.hosts]),
                            ("actions", [action.name for action in self.actions]),
                            ("forwards", [forward.name for forward in self.forwards])):
            first_seen: dict[str, int] = {}
            for index, name in enumerate(names):
                if name in first_seen:
                    first = f"{kind}[{first_seen[name]}]"
                    problems.append(((kind, index, "name"), f"duplicate name {name!r} (first at {first})"))
                first_seen.setdefault(name, index)
        targeted: list[tuple[str, int, Targeted]] = [("actions", i, a) for i, a in enumerate(self.actions)]
        targeted += [("forwards", i, f) for i, f in enumerate(self.forwards)]
        for kind, index, entry in targeted:
            for position, name in enumerate(entry.hosts):
                if name not in host_names:
                    problems.append(((kind, index, "hosts", position), f"no host is named {name!r}"))
            for position, label in enumerate(entry.labels):
                if label not in host_labels:
                    problems.append(((kind, index, "labels", position), f"no host has the label {label!r}"))
        if problems:
            raise _CrossReferenceProblems(problems)
        return self

    def host(self, name: str) -> SshHost | None:
        return next((host for host in self.hosts if host.name == name), None)

    def action(self, name: str) -> SshAction | None:
        return next((action for action in self.actions if action.name == name), None)

    def forward(self, name: str) -> SshForward | None:
        return next((forward for forward in self.forwards if forward.name == name), None)

    def hosts_for(self, entry: Targeted) -> list[SshHost]:
        return [host for host in self.hosts if entry.may_run_on(host)]


# --- YAML with locations ------------------------------------------------------------------------


def _path_text(path: tuple[str | int, ...]) -> str:
    text = ""
    for part in path:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text or "(document)"


def _index_nodes(node: Any, path: tuple[str | int, ...], marks: dict[tuple[str | int, ...], Any],
                 problems: list[str]) -> None:
    """Record where every mapping key and sequence item starts; flag keys given twice (YAML
    would silently keep the last, hiding a mistake)."""
    import yaml

    marks[path] = node.start_mark
    if isinstance(node, yaml.MappingNode):
        seen: set[str] = set()
        for key_node, value_node in node.value:
            key = key_node.value if isinstance(key_node, yaml.ScalarNode) else str(key_node.start_mark)
            if key in seen:
                problems.append(f"{_where(key_node.start_mark)}: {_path_text((*path, key))} is given twice")
            seen.add(key)
            _index_nodes(value_node, (*path, key), marks, problems)
    elif isinstance(node, yaml.SequenceNode):
        for index, item in enumerate(node.value):
            _index_nodes(item, (*path, index), marks, problems)


def _where(mark: Any) -> str:
    return f"line {mark.line + 1}, column {mark.column + 1}"


def _located(path: tuple[str | int, ...], message: str, marks: dict[tuple[str | int, ...], Any]) -> str:
    # pydantic's locations include union tags and validator names that are no YAML key: keep the
    # parts that are, and point at the deepest node found.
    kept: tuple[str | int, ...] = ()
    for part in path:
        if (*kept, part) in marks:
            kept = (*kept, part)
    return f"{_where(marks[kept])}: {_path_text(kept)}: {message}"


def parse_inventory(text: str) -> SshInventory:
    """The inventory in `text` (YAML, or JSON, which is YAML), or InventoryInvalid listing every
    problem found with its line and column."""
    import yaml  # only where an inventory is loaded: the contract is imported by every worker

    if len(text.encode()) > MAX_INVENTORY_BYTES:
        raise InventoryInvalid([f"the inventory is over {MAX_INVENTORY_BYTES} bytes"])
    loader = yaml.SafeLoader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            raise InventoryInvalid(["the inventory is empty"])
        marks: dict[tuple[str | int, ...], Any] = {}
        problems: list[str] = []
        _index_nodes(node, (), marks, problems)
        if problems:
            raise InventoryInvalid(problems)
        data = loader.construct_document(node)
    except yaml.MarkedYAMLError as error:
        mark = error.problem_mark or error.context_mark
        raise InventoryInvalid([f"{_where(mark) if mark else 'YAML'}: {error.problem or error.context}"]) from None
    except yaml.YAMLError as error:
        raise InventoryInvalid([f"not valid YAML: {error}"]) from None
    finally:
        loader.dispose()
    try:
        return SshInventory.model_validate(data)
    except ValidationError as error:
        located = []
        for problem in error.errors(include_url=False, include_input=False):
            cause = (problem.get("ctx") or {}).get("error")
            if isinstance(cause, _CrossReferenceProblems):
                located += [_located(path, message, marks) for path, message in cause.problems]
            else:
                message = problem["msg"].removeprefix("Value error, ")
                located.append(_located(tuple(problem["loc"]), message, marks))
        raise InventoryInvalid(located) from None
