"""The two installers a worker runs itself: `uv` for PyPI and `npm` for npm.

Each knows its commands (resolve the latest version, install one exact version into a
directory), the lines of its output that mark progress, and where the installed package's
entry point is. Neither runs code from the package while installing:

- uv installs wheels only (`--no-build`): building an sdist would run the package's build
  backend on the worker, outside any sandbox, with the network on. A package that publishes
  no wheel fails with uv's own message. Bytecode is compiled at install time because the
  sandbox sees the cache read-only and could not write it later (compiling runs no package
  code).
- npm runs no lifecycle scripts (`--ignore-scripts`), for the same reason: a `postinstall`
  would run as the worker. MCP servers on npm ship built JavaScript; one that needs a native
  build step fails when it starts, with its own error.

Installers get the worker's environment minus settings that would redirect them (see
`process.installer_environment`), and their download caches live in the install's scratch
directory, deleted afterwards: the cache holds one copy of each version and nothing else, so
its size cap means what it says.
"""

import glob
import importlib.metadata
import json
import os
import re
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from app.contract.packages import NPM, PYPI, PackageSpec, check_version
from workers.packages.errors import PackageInstallFailed, PackageRefused
from workers.packages.process import Command, Outcome
from workers.packages.progress import Stage

# Where the registries a worker uses by default publish, as server.json's `registryBaseUrl`
# names them; a package naming another registry is refused unless the runtime uses that one.
PUBLIC_REGISTRIES = {PYPI: "https://pypi.org", NPM: "https://registry.npmjs.org"}
DEFAULT_REGISTRY_URLS = {PYPI: "https://pypi.org/simple", NPM: "https://registry.npmjs.org/"}


@dataclass(frozen=True)
class Launch:
    """How to run an installed entry point: argv, the host directories it must see, its env."""

    argv: list[str]
    readonly_dirs: tuple[str, ...]
    env: dict[str, str]


class Installer(Protocol):
    registry_type: str
    # Output lines that mark the start of a stage, in the order the stages come.
    stage_markers: tuple[tuple[re.Pattern[str], Stage], ...]

    def latest_command(self, spec: PackageSpec, scratch: Path) -> Command: ...

    def parse_latest(self, spec: PackageSpec, outcome: Outcome) -> str: ...

    def install_commands(self, spec: PackageSpec, version: str, files: Path, scratch: Path) -> list[Command]: ...

    def entry_point(self, spec: PackageSpec, files: Path) -> str: ...

    def launch(self, files: Path, entry: str) -> Launch: ...


def accepts_registry(registry_type: str, registry_url: str, base_url: str | None) -> bool:
    """Whether a package naming `base_url` may be installed from the configured `registry_url`:
    always for the public registry (a configured mirror serves the same names) and for the
    configured registry itself."""
    if base_url is None:
        return True
    wanted, configured = base_url.rstrip("/"), registry_url.rstrip("/")
    return wanted == PUBLIC_REGISTRIES.get(registry_type) or configured == wanted or \
        configured.startswith(wanted + "/")  # https://pypi.org serves its index at https://pypi.org/simple


class UvInstaller:
    registry_type = PYPI
    stage_markers: tuple[tuple[re.Pattern[str], Stage], ...] = (
        (re.compile(r"^Resolved \d+ packages?"), "downloading"),
        (re.compile(r"^(Prepared|Installed) \d+ packages?"), "installing"),
    )

    def __init__(self, uv: str, python: str, index_url: str):
        self.uv, self.python, self.index_url = uv, python, index_url

    def _common(self, cache_dir: Path) -> list[str]:
        return ["--default-index", self.index_url, "--no-config", "--cache-dir", str(cache_dir),
                "--color", "never", "--no-progress"]

    def latest_command(self, spec: PackageSpec, scratch: Path) -> Command:
        # `pip compile` answers with the version uv would install for this Python.
        return Command([self.uv, "pip", "compile", "-", "--no-deps", "--no-header", "--no-annotate",
                        "--python", self.python, *self._common(scratch / "uv-cache")],
                       input=spec.identifier.encode() + b"\n")

    def parse_latest(self, spec: PackageSpec, outcome: Outcome) -> str:
        for line in outcome.lines:
            name, separator, version = line.partition("==")
            if separator and _canonical(name) == spec.canonical_name:
                check_version(PYPI, version)
                return version
        raise PackageInstallFailed(f"uv named no version of {spec.identifier}: {outcome.tail}")

    def install_commands(self, spec: PackageSpec, version: str, files: Path, scratch: Path) -> list[Command]:
        venv = files / "venv"
        # Relocatable: the venv is built in a scratch directory and renamed into the cache.
        env = {"UV_PYTHON_DOWNLOADS": "never"}  # only the worker's interpreter, seen by the sandbox
        return [
            Command([self.uv, "venv", str(venv), "--python", self.python, "--relocatable", "--no-config",
                     "--color", "never", "--no-progress", "--cache-dir", str(scratch / "uv-cache")], env),
            Command([self.uv, "pip", "install", "--python", str(venv / "bin" / "python"), "--no-build",
                     "--compile-bytecode", *self._common(scratch / "uv-cache"), f"{spec.identifier}=={version}"],
                    env),
        ]

    def entry_point(self, spec: PackageSpec, files: Path) -> str:
        """The console script named like the package (as `uvx NAME` runs), else its only one."""
        site_packages = glob.glob(str(files / "venv" / "lib" / "python*" / "site-packages"))
        distribution = next((d for d in importlib.metadata.distributions(path=site_packages)
                             if _canonical(d.metadata["Name"]) == spec.canonical_name), None)
        if distribution is None:
            raise PackageInstallFailed(f"uv reported success but {spec.identifier} is not installed")
        scripts = sorted(e.name for e in distribution.entry_points if e.group == "console_scripts")
        chosen = _choose_executable(spec, scripts, _canonical)
        return f"venv/bin/{chosen}"

    def launch(self, files: Path, entry: str) -> Launch:
        python = files / "venv" / "bin" / "python"
        interpreter_prefix = os.path.dirname(os.path.dirname(os.path.realpath(python)))
        return Launch([str(python), str(files / entry)], (str(files), interpreter_prefix),
                      {"PYTHONDONTWRITEBYTECODE": "1"})


class NpmInstaller:
    registry_type = NPM
    stage_markers: tuple[tuple[re.Pattern[str], Stage], ...] = (
        (re.compile(r"^npm http (fetch GET \d+|cache) \S+\.tgz"), "downloading"),
    )

    def __init__(self, npm: str, node: str, registry_url: str):
        self.npm, self.node, self.registry_url = npm, node, registry_url

    def _common(self, scratch: Path) -> list[str]:
        return ["--registry", self.registry_url, "--cache", str(scratch / "npm-cache"), "--color", "false",
                "--no-update-notifier"]

    def latest_command(self, spec: PackageSpec, scratch: Path) -> Command:
        return Command([self.npm, "view", f"{spec.identifier}@latest", "version", "--json", *self._common(scratch)])

    def parse_latest(self, spec: PackageSpec, outcome: Outcome) -> str:
        try:
            version = json.loads("\n".join(line for line in outcome.lines if not line.startswith("npm ")))
        except ValueError:
            version = None
        if not isinstance(version, str):
            raise PackageInstallFailed(f"npm named no latest version of {spec.identifier}: {outcome.tail}")
        check_version(NPM, version)
        return version

    def install_commands(self, spec: PackageSpec, version: str, files: Path, scratch: Path) -> list[Command]:
        return [Command([self.npm, "install", "--prefix", str(files), "--ignore-scripts", "--no-audit", "--no-fund",
                         "--save-exact", "--loglevel", "http", *self._common(scratch),
                         f"{spec.identifier}@{version}"])]

    def entry_point(self, spec: PackageSpec, files: Path) -> str:
        """The package's `bin`: the only one, else the one named like the package without its
        scope (npx's rule)."""
        package_dir = files / "node_modules" / spec.identifier
        try:
            manifest = json.loads((package_dir / "package.json").read_text())
        except (OSError, ValueError) as error:
            raise PackageInstallFailed(f"npm reported success but {spec.identifier} is not installed: {error}") \
                from None
        bins = manifest.get("bin") or {}
        if isinstance(bins, str):
            bins = {spec.identifier.rsplit("/", 1)[-1]: bins}
        chosen = _choose_executable(spec, sorted(bins), lambda name: name)
        target = (package_dir / bins[chosen]).resolve()
        if not target.is_relative_to(files.resolve()) or not target.is_file():
            raise PackageInstallFailed(f"{spec.identifier}'s bin {chosen!r} names no file in the package")
        return str(target.relative_to(files.resolve()))

    def launch(self, files: Path, entry: str) -> Launch:
        script = files / entry
        node_prefix = os.path.dirname(os.path.dirname(os.path.realpath(self.node)))
        # npm bins are node scripts (`#!/usr/bin/env node`); anything else runs as itself.
        argv = [self.node, str(script)] if _runs_on_node(script) else [str(script)]
        return Launch(argv, (str(files), node_prefix), {})


def installers(registry_urls: dict[str, str], *, python: str | None = None) -> dict[str, Installer]:
    """The installers this host can run for the registries it is configured with; a registry
    whose tool is missing is left out (its packages are then refused, saying why)."""
    found: dict[str, Installer] = {}
    uv, npm, node = uv_binary(), shutil.which("npm"), shutil.which("node")
    if PYPI in registry_urls and uv:
        found[PYPI] = UvInstaller(uv, python or sys.executable, registry_urls[PYPI])
    if NPM in registry_urls and npm and node:
        found[NPM] = NpmInstaller(npm, node, registry_urls[NPM])
    return found


def missing_tool_message(registry_type: str) -> str:
    tool = {PYPI: "uv", NPM: "npm and node"}.get(registry_type)
    if tool is None:
        return f"this runtime does not install {registry_type} packages"
    return f"this runtime cannot install {registry_type} packages: {tool} not installed or {registry_type} not enabled"


def refuse_unsupported(spec: PackageSpec, registry_url: str) -> None:
    """Raise PackageRefused for what an installed entry point cannot honour."""
    if not accepts_registry(spec.registry_type, registry_url, spec.registry_base_url):
        raise PackageRefused(f"this runtime installs {spec.registry_type} packages from {registry_url}, "
                             f"not from {spec.registry_base_url}")
    ignorable = {"-y", "--yes"} if spec.registry_type == NPM else set()
    given = [argument.name or argument.effective_value for argument in spec.runtime_arguments]
    extra = [argument for argument in given if argument not in ignorable]
    if extra:
        raise PackageRefused(f"runtime arguments are not supported for {spec.registry_type} packages: {extra}")


def _choose_executable(spec: PackageSpec, names: list[str], canonical) -> str:
    if not names:
        raise PackageInstallFailed(f"{spec.identifier} provides no executable to run")
    wanted = canonical(spec.identifier.rsplit("/", 1)[-1])
    matching = [name for name in names if canonical(name) == wanted]
    if matching:
        return matching[0]
    if len(names) == 1:
        return names[0]
    raise PackageInstallFailed(f"{spec.identifier} provides several executables and none named like the "
                               f"package: {', '.join(names)}")


def _canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _runs_on_node(script: Path) -> bool:
    with open(script, "rb") as file:
        first = file.readline(200)
    return not first.startswith(b"#!") or b"node" in first


def uv_binary() -> str | None:
    try:
        from uv import find_uv_bin  # the `uv` wheel of the worker extra
    except ImportError:
        return shutil.which("uv")
    try:
        return find_uv_bin()
    except FileNotFoundError:
        return shutil.which("uv")
