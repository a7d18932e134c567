"""The Lambda package holds what the API imports and nothing else, within a size budget.

The package is the core dependencies of pyproject.toml with everything they require, as the
installed distributions declare it, plus berth's own code. Its size is read from the installed
distributions' RECORD files (nothing is built or installed here). AWS allows 250 MB unzipped;
the budget keeps the headroom for the features still to come (docs/decisions.md, "Packaging").
"""

import ast
import sys
import tomllib
from importlib import metadata
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[2]
BUDGET_MB = 80
# What the worker and the local stack need and the API must not carry. (The API serves berth's own
# MCP endpoint, /mcp, so it carries the MCP SDK, which requires uvicorn and jsonschema.)
NOT_IN_LAMBDA = {"huggingface-hub", "asyncssh", "typer", "rich", "moto"}


def _pyproject() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())


def closure(requirements: list[str]) -> dict[str, metadata.Distribution]:
    """Every installed distribution the requirements pull in, by canonical name (extras followed)."""
    found: dict[str, tuple[metadata.Distribution, set[str]]] = {}

    def visit(requirement: Requirement) -> None:
        name = canonicalize_name(requirement.name)
        previous = found.get(name)
        if previous is not None and set(requirement.extras) <= previous[1]:
            return
        distribution = previous[0] if previous else metadata.distribution(requirement.name)
        extras = (previous[1] if previous else set()) | set(requirement.extras)
        found[name] = (distribution, extras)
        for declared in distribution.requires or []:
            needed = Requirement(declared)
            if needed.marker is None or any(needed.marker.evaluate({"extra": extra}) for extra in extras or {""}):
                visit(needed)

    for requirement in requirements:
        visit(Requirement(requirement))
    return {name: distribution for name, (distribution, _) in found.items()}


def _recorded_bytes(distribution: metadata.Distribution) -> int:
    return sum(file.size or 0 for file in distribution.files or [])


def _api_sources() -> list[Path]:
    """berth's code in the Lambda package: app (but the local stack and the CLI) and functions."""
    sources = [*(ROOT / "app").rglob("*.py"), *(ROOT / "functions").rglob("*.py")]
    return [path for path in sources if "local" not in path.relative_to(ROOT).parts and path.name != "cli.py"]


def _imported_top_levels(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names |= {alias.name.partition(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.partition(".")[0])
    return names


def test_every_third_party_import_of_the_api_is_a_core_dependency():
    core = closure(_pyproject()["project"]["dependencies"])
    owners = metadata.packages_distributions()
    imported = set().union(*(_imported_top_levels(path) for path in _api_sources()))
    third_party = imported - set(sys.stdlib_module_names) - {"app", "functions"}
    outside = {name: owners.get(name) for name in third_party
               if not {canonicalize_name(owner) for owner in owners.get(name, [])} & core.keys()}
    assert outside == {}, f"the API imports these, which the core dependencies do not bring: {outside}"


def test_the_lambda_package_carries_no_worker_or_local_stack_weight_and_fits_its_budget():
    core = closure(_pyproject()["project"]["dependencies"])
    assert NOT_IN_LAMBDA.isdisjoint(core), sorted(NOT_IN_LAMBDA & core.keys())
    dependencies = sum(_recorded_bytes(distribution) for distribution in core.values())
    own = sum(path.stat().st_size for path in _api_sources())
    size_mb = (dependencies + own) / 1_000_000
    assert size_mb <= BUDGET_MB, f"the Lambda package is {size_mb:.1f} MB, over its {BUDGET_MB} MB budget"


def test_the_extras_install_what_the_worker_and_the_local_stack_need():
    extras = _pyproject()["project"]["optional-dependencies"]
    worker = {canonicalize_name(Requirement(r).name) for r in extras["worker"]}
    assert {"mcp", "huggingface-hub", "asyncssh", "uvicorn", "uv"} <= worker
    assert "berth[cli]" in extras["worker"] and any(r.startswith("typer") for r in extras["cli"])  # `berth worker`
    assert "berth[worker]" in extras["local"] and any(r.startswith("moto[server]") for r in extras["local"])
    assert "berth[local]" in extras["test"]  # `make test` installs everything the suite starts
