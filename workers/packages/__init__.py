"""MCP servers from packages: the worker's own install of npm and PyPI packages, once per exact
version, into a cache that sandboxes see read-only (`cache.PackageCache`)."""

from workers.packages.cache import InstalledPackage, PackageCache, PackageKey
from workers.packages.errors import PackageInstallFailed, PackageRefused
from workers.packages.progress import InstallProgress, ProgressCallback

__all__ = [
    "InstallProgress",
    "InstalledPackage",
    "PackageCache",
    "PackageInstallFailed",
    "PackageKey",
    "PackageRefused",
    "ProgressCallback",
]
