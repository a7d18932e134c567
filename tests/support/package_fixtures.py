"""Helpers for the package cache tests: caches on the real registries, the published servers
they install, and the start command that means a package.

`SandboxSession.start` checks the user's start command against the policy and runs the argv the
worker gives in its place: an installed entry point, which is a path (the policy would refuse a
path from a user). `start_command(spec)` is what a user would have typed for the package
(`npx -y NAME@VERSION`, `uvx NAME==VERSION`), as the sandbox executor has it.

Run as a script (`python -m tests.support.package_fixtures ROOT SPEC_JSON`) it ensures one
package in the cache at ROOT and prints what it got: the cross-process test runs two at once.
"""

import asyncio
import json
import sys
from pathlib import Path

from app.contract.messages import SandboxServer
from app.contract.packages import PackageSpec
from tests.support.registry_server import (
    EVERYTHING_PACKAGE,
    EVERYTHING_VERSIONS,
    FILESYSTEM_PACKAGE,
    FILESYSTEM_VERSION,
    TIME_PACKAGE,
    TIME_VERSIONS,
)
from workers.packages import InstallProgress, PackageCache
from workers.packages.installers import DEFAULT_REGISTRY_URLS

TIME_SPEC = PackageSpec(registry_type="pypi", identifier=TIME_PACKAGE, version=TIME_VERSIONS[-1])
EVERYTHING_SPEC = PackageSpec.model_validate(
    {"registryType": "npm", "identifier": EVERYTHING_PACKAGE, "version": EVERYTHING_VERSIONS[-1],
     "packageArguments": [{"type": "positional", "value": "stdio"}]})
FILESYSTEM_SPEC = PackageSpec(registry_type="npm", identifier=FILESYSTEM_PACKAGE, version=FILESYSTEM_VERSION)
# A small npm package with a bin and no dependencies: cheap to install many versions of.
SMALL_PACKAGE = "semver"
SMALL_VERSIONS = ("7.6.0", "7.6.1", "7.6.2", "7.6.3")
GIGABYTE = 1024**3


def small_spec(version: str | None) -> PackageSpec:
    return PackageSpec(registry_type="npm", identifier=SMALL_PACKAGE, version=version)


def public_cache(root: Path, max_bytes: int = GIGABYTE) -> PackageCache:
    return PackageCache(root, max_bytes, dict(DEFAULT_REGISTRY_URLS))


def start_command(spec: PackageSpec) -> str:
    """The start command a user would give for `spec`; the policy judges it."""
    return SandboxServer(package=spec).command


class ProgressLog:
    """A progress callback that keeps what it was told."""

    def __init__(self) -> None:
        self.events: list[InstallProgress] = []

    async def __call__(self, progress: InstallProgress) -> None:
        self.events.append(progress)

    @property
    def stages(self) -> list[str]:
        return [event.stage for event in self.events]


async def _ensure_once(root: Path, spec: PackageSpec) -> dict:
    cache = public_cache(root)
    installed = await cache.ensure(spec)
    installed.release()
    return {"installed_now": installed.installed_now, "installer_runs": cache.installer_runs, "argv": installed.argv}


if __name__ == "__main__":
    print(json.dumps(asyncio.run(_ensure_once(Path(sys.argv[1]), PackageSpec.model_validate_json(sys.argv[2])))))
