"""The worker's package cache against the real registries: `uv` installing from PyPI and `npm`
from the npm registry, and what it installs started under the real sandbox (bubblewrap, network
off, the cache read-only) and listed with the `mcp` client."""

import asyncio
import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from app.contract.packages import PackageSpec, parse_start_command
from app.contract.policy import SandboxPolicy
from tests.support.package_fixtures import (
    EVERYTHING_SPEC,
    FILESYSTEM_SPEC,
    SMALL_PACKAGE,
    SMALL_VERSIONS,
    TIME_SPEC,
    ProgressLog,
    public_cache,
    small_spec,
    start_command,
)
from tests.support.registry_server import MISSING_PACKAGE
from tests.support.sandbox_fixtures import anyio_backend, require_bubblewrap  # noqa: F401 (fixtures)
from workers.packages import PackageCache, PackageInstallFailed, PackageRefused
from workers.packages.installers import DEFAULT_REGISTRY_URLS
from workers.sandbox.session import ARGUMENT_CHECKS, SandboxSession

pytestmark = pytest.mark.anyio

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def shared_root(tmp_path_factory) -> Path:
    """One cache for the published servers, so each is downloaded once per run of this module."""
    return tmp_path_factory.mktemp("package-cache")


def installed_files(root: Path) -> list[Path]:
    return [path for path in (root / "installed").rglob("*") if path.is_file()] if (root / "installed").exists() \
        else []


def staged_files(root: Path) -> list[Path]:
    return [path for path in (root / "staging").rglob("*") if path.is_file()] if (root / "staging").exists() else []


@pytest.fixture
async def argument_checks_closed():
    yield
    await ARGUMENT_CHECKS.close()  # its checker processes belong to this test's event loop


async def start_in_sandbox(spec: PackageSpec, installed, workdir: Path, env: dict[str, str] | None = None,
                           more_arguments: tuple[str, ...] = ()) -> SandboxSession:
    """As the sandbox executor starts it: the user's command checked, the installed argv run."""
    session = SandboxSession()
    await session.start(start_command(spec), installed.env | (env or {}), str(workdir), SandboxPolicy(),
                        readonly_dirs=installed.readonly_dirs, argv=[*installed.argv, *more_arguments])
    return session


# --- from the registries into the sandbox ---------------------------------------------------------


@pytest.mark.usefixtures("require_bubblewrap", "argument_checks_closed")
async def test_mcp_server_time_from_pypi_runs_in_the_sandbox_with_the_cache_read_only_and_no_network(
        shared_root, tmp_path):
    installed = await public_cache(shared_root).ensure(TIME_SPEC)
    try:
        session = await start_in_sandbox(TIME_SPEC, installed, tmp_path / "work")
        try:
            answer = await session.call_tool("get_current_time", {"timezone": "Europe/Paris"})
        finally:
            await session.stop()
    finally:
        installed.release()

    assert session.isolation == "bubblewrap" and SandboxPolicy().network is False
    assert {tool["name"] for tool in session.tools_at_start} == {"get_current_time", "convert_time"}
    assert answer["ok"] is True and "Europe/Paris" in json.dumps(answer["result"])
    files_dir = shared_root / "installed" / "pypi" / "mcp-server-time" / TIME_SPEC.version / "files"
    assert installed.readonly_dirs[0] == str(files_dir)
    assert installed.argv[:2] == [str(files_dir / "venv" / "bin" / "python"),
                                  str(files_dir / "venv" / "bin" / "mcp-server-time")]


@pytest.mark.usefixtures("require_bubblewrap", "argument_checks_closed")
async def test_server_everything_from_npm_runs_in_the_sandbox_with_its_arguments_and_environment(
        shared_root, tmp_path):
    installed = await public_cache(shared_root).ensure(EVERYTHING_SPEC)
    try:
        session = await start_in_sandbox(EVERYTHING_SPEC, installed, tmp_path / "work",
                                         env={"BERTH_TEST_SECRET": "s3cret"})
        try:
            echoed = await session.call_tool("echo", {"message": "from the cache"})
            environment = await session.call_tool("get-env", {})
        finally:
            await session.stop()
    finally:
        installed.release()

    assert session.isolation == "bubblewrap"
    assert {"echo", "get-env", "get-sum"} <= {tool["name"] for tool in session.tools_at_start}
    assert installed.argv[-1] == "stdio"  # the package argument, after the entry point
    assert echoed["ok"] is True and "from the cache" in json.dumps(echoed["result"])
    assert "s3cret" in json.dumps(environment["result"])


@pytest.mark.usefixtures("require_bubblewrap", "argument_checks_closed")
async def test_inside_the_sandbox_the_installed_package_can_be_read_but_not_changed(shared_root, tmp_path):
    installed = await public_cache(shared_root).ensure(FILESYSTEM_SPEC)
    files_dir = installed.readonly_dirs[0]
    try:
        # The filesystem server, allowed into its own installed files.
        session = await start_in_sandbox(FILESYSTEM_SPEC, installed, tmp_path / "work", more_arguments=(files_dir,))
        try:
            read = await session.call_tool("read_text_file", {"path": f"{files_dir}/package.json"})
            written = await session.call_tool("write_file", {"path": f"{files_dir}/planted.txt", "content": "x"})
        finally:
            await session.stop()
    finally:
        installed.release()

    assert read["ok"] is True and FILESYSTEM_SPEC.identifier in json.dumps(read["result"])
    assert written["ok"] is False and "EROFS: read-only file system" in written["error"]
    assert not Path(files_dir, "planted.txt").exists()


@pytest.mark.usefixtures("require_bubblewrap")
async def test_an_install_made_under_a_private_umask_still_runs_as_the_sandbox_s_own_uid(tmp_path):
    previous = os.umask(0o077)  # a worker may run so; a root worker's sandboxes run as other uids
    try:
        installed = await public_cache(tmp_path / "cache").ensure(TIME_SPEC)
    finally:
        os.umask(previous)
    try:
        session = await start_in_sandbox(TIME_SPEC, installed, tmp_path / "work")
        await session.stop()
    finally:
        installed.release()

    assert {tool["name"] for tool in session.tools_at_start} == {"get_current_time", "convert_time"}
    assert stat.S_IMODE(os.stat(installed.readonly_dirs[0]).st_mode) == 0o755


async def test_a_second_start_of_the_same_version_installs_nothing(shared_root):
    cache = public_cache(shared_root)
    first = await cache.ensure(TIME_SPEC)
    first.release()
    runs_after_first = cache.installer_runs
    receipt = json.loads((Path(first.readonly_dirs[0]).parent / "receipt.json").read_text())
    log = ProgressLog()

    second = await cache.ensure(TIME_SPEC, log)
    second.release()

    assert second.installed_now is False
    assert cache.installer_runs == runs_after_first
    assert [(event.stage, event.cached) for event in log.events] == [("done", True)]
    assert json.loads((Path(second.readonly_dirs[0]).parent / "receipt.json").read_text()) == receipt
    assert second.argv == first.argv


# --- installing once ------------------------------------------------------------------------------


async def test_two_concurrent_ensures_of_one_version_install_it_once(tmp_path):
    cache = public_cache(tmp_path / "cache")
    first_log, second_log = ProgressLog(), ProgressLog()

    first, second = await asyncio.gather(cache.ensure(small_spec(SMALL_VERSIONS[0]), first_log),
                                         cache.ensure(small_spec(SMALL_VERSIONS[0]), second_log))
    first.release(), second.release()

    assert cache.installer_runs == 1
    assert (first.installed_now, second.installed_now) == (True, False)
    assert first.argv == second.argv
    assert first_log.stages[-1] == second_log.stages[-1] == "done"
    assert [entry.version for entry in cache.summary().entries] == [SMALL_VERSIONS[0]]


def test_two_processes_ensuring_one_version_at_once_install_it_once(tmp_path):
    spec = small_spec(SMALL_VERSIONS[1]).model_dump_json(by_alias=True)
    processes = [subprocess.Popen([sys.executable, "-m", "tests.support.package_fixtures", str(tmp_path / "cache"),
                                   spec], cwd=ROOT, stdout=subprocess.PIPE, text=True) for _ in range(2)]
    answers = [json.loads(process.communicate(timeout=240)[0]) for process in processes]

    assert sorted(answer["installed_now"] for answer in answers) == [False, True]
    assert sum(answer["installer_runs"] for answer in answers) == 1
    assert answers[0]["argv"] == answers[1]["argv"]


async def test_an_install_reports_its_stages_in_order_with_the_installer_s_output(tmp_path):
    log = ProgressLog()

    installed = await public_cache(tmp_path / "cache").ensure(small_spec(SMALL_VERSIONS[2]), log)
    installed.release()

    assert log.stages == ["resolving", "downloading", "installing", "done"]
    assert all(event.package == f"npm {SMALL_PACKAGE}@{SMALL_VERSIONS[2]}" for event in log.events)
    assert f"{SMALL_PACKAGE}-{SMALL_VERSIONS[2]}.tgz" in log.events[1].output_tail
    assert "added 1 package" in log.events[-1].output_tail
    assert installed.installed_now is True


async def test_a_package_without_a_version_is_resolved_to_the_latest_and_cached_under_it(tmp_path):
    latest = subprocess.run(["npm", "view", SMALL_PACKAGE, "version"], capture_output=True, text=True,
                            check=True).stdout.strip()
    log = ProgressLog()

    installed = await public_cache(tmp_path / "cache").ensure(small_spec(None), log)
    installed.release()

    assert installed.key.version == latest
    assert log.stages[0] == "resolving" and log.events[0].message == f"resolving the latest version of {SMALL_PACKAGE}"
    assert (tmp_path / "cache" / "installed" / "npm" / SMALL_PACKAGE / latest / "receipt.json").exists()


async def test_uvx_without_a_version_runs_the_latest_pypi_release_uv_resolves_for_this_python(shared_root):
    latest_published = httpx.get(f"https://pypi.org/pypi/{TIME_SPEC.identifier}/json", timeout=30).json()["info"]
    log = ProgressLog()

    installed = await public_cache(shared_root).ensure(parse_start_command(f"uvx {TIME_SPEC.identifier}"), log)
    installed.release()

    assert installed.key.version == latest_published["version"]  # it supports Python 3.10 and later
    assert log.events[0].message == f"resolving the latest version of {TIME_SPEC.identifier}"
    assert installed.argv[1].endswith("/venv/bin/mcp-server-time")


# --- failures -------------------------------------------------------------------------------------


@pytest.mark.parametrize(("spec", "installer_says"), [
    (PackageSpec(registry_type="npm", identifier=MISSING_PACKAGE, version="1.0.0"), "404 Not Found"),
    (PackageSpec(registry_type="pypi", identifier="berth-test-no-such-mcp-server-zq", version="1.0.0"),
     "berth-test-no-such-mcp-server-zq was not found in the package registry"),
    (PackageSpec(registry_type="pypi", identifier="mcp-server-time", version="1999.1.1"),
     "there is no version of mcp-server-time==1999.1.1"),
    (PackageSpec(registry_type="npm", identifier=SMALL_PACKAGE, version="0.0.0-berth-no-such-version"),
     "No matching version found for semver@0.0.0-berth-no-such-version"),
], ids=["npm-package", "pypi-package", "pypi-version", "npm-version"])
async def test_a_package_or_version_that_does_not_exist_fails_with_the_installer_s_message(tmp_path, spec,
                                                                                          installer_says):
    cache = public_cache(tmp_path / "cache")

    with pytest.raises(PackageInstallFailed, match=installer_says):
        await cache.ensure(spec)

    assert cache.summary().entries == [] and installed_files(tmp_path / "cache") == []
    assert staged_files(tmp_path / "cache") == []


async def test_an_install_that_runs_past_its_deadline_is_killed_and_leaves_nothing_behind(tmp_path):
    cache = PackageCache(tmp_path / "cache", 10**9, dict(DEFAULT_REGISTRY_URLS), install_timeout=0.2)

    with pytest.raises(PackageInstallFailed, match="did not finish within 0.2s"):
        await cache.ensure(small_spec(SMALL_VERSIONS[3]))

    assert installed_files(tmp_path / "cache") == [] and staged_files(tmp_path / "cache") == []


async def test_debris_of_a_crashed_install_is_cleared_and_never_used(tmp_path):
    root = tmp_path / "cache"
    debris = root / "staging" / "npm" / SMALL_PACKAGE / SMALL_VERSIONS[0] / "tmpcrashed" / "entry"
    (debris / "files").mkdir(parents=True)
    (debris / "receipt.json").write_text('{"entry": "half-written"}')
    cache = public_cache(root)

    installed = await cache.ensure(small_spec(SMALL_VERSIONS[0]))
    installed.release()

    assert installed.installed_now is True and not debris.exists()
    assert installed.argv[-1].endswith("node_modules/semver/bin/semver.js")


@pytest.mark.parametrize(("spec", "reason"), [
    (PackageSpec(registry_type="oci", identifier="docker.io/mcp/time", version="1.0.0"), "container engine"),
    (PackageSpec(registry_type="nuget", identifier="Some.Server", version="1.0.0"),
     "does not install nuget packages"),
    (PackageSpec(registry_type="npm", identifier=SMALL_PACKAGE, version="7.6.0",
                 registry_base_url="https://npm.example.com"),
     "installs npm packages from https://registry.npmjs.org/, not from https://npm.example.com"),
    (PackageSpec.model_validate({"registryType": "pypi", "identifier": "mcp-server-time", "version": "2026.10.19",
                                 "runtimeArguments": [{"type": "named", "name": "--from", "value": "evil"}]}),
     "runtime arguments are not supported"),
], ids=["oci", "nuget", "other-registry", "runtime-arguments"])
async def test_what_the_runtime_cannot_install_is_refused_before_any_installer_runs(tmp_path, spec, reason):
    cache = public_cache(tmp_path / "cache")

    with pytest.raises(PackageRefused, match=reason):
        await cache.ensure(spec)

    assert cache.installer_runs == 0


async def test_a_registry_type_the_runtime_is_not_configured_for_is_refused(tmp_path):
    cache = PackageCache(tmp_path / "cache", 10**9, {"pypi": DEFAULT_REGISTRY_URLS["pypi"]})

    with pytest.raises(PackageRefused, match="cannot install npm packages"):
        await cache.ensure(small_spec(SMALL_VERSIONS[0]))


# --- the size cap -----------------------------------------------------------------------------------


async def test_eviction_under_a_tiny_cap_never_takes_a_version_in_use(tmp_path):
    cache = public_cache(tmp_path / "cache", max_bytes=1)  # everything not in use must go
    held = await cache.ensure(small_spec(SMALL_VERSIONS[0]))
    released = await cache.ensure(small_spec(SMALL_VERSIONS[1]))
    released.release()

    newest = await cache.ensure(small_spec(SMALL_VERSIONS[2]))  # its install triggers eviction

    in_cache = {entry.version: entry.in_use for entry in cache.summary().entries}
    assert in_cache == {SMALL_VERSIONS[0]: True, SMALL_VERSIONS[2]: True}
    held.release()
    assert cache.evict() == [held.key]
    assert [entry.version for entry in cache.summary().entries] == [SMALL_VERSIONS[2]]
    newest.release()


async def test_eviction_takes_the_least_recently_used_versions_first(tmp_path):
    cache = public_cache(tmp_path / "cache")
    for version in SMALL_VERSIONS[:3]:
        (await cache.ensure(small_spec(version))).release()
    (await cache.ensure(small_spec(SMALL_VERSIONS[0]))).release()  # used again: now the most recent
    sizes = {entry.version: entry.size_bytes for entry in cache.summary().entries}
    cache.max_bytes = sizes[SMALL_VERSIONS[0]] + max(sizes.values()) * 3 // 2  # room for two, not three more

    (await cache.ensure(small_spec(SMALL_VERSIONS[3]))).release()

    summary = cache.summary()
    assert {entry.version for entry in summary.entries} == {SMALL_VERSIONS[0], SMALL_VERSIONS[3]}
    assert summary.total_bytes <= summary.max_bytes
    assert not any(entry.in_use for entry in summary.entries)


# --- settings -----------------------------------------------------------------------------------------


def test_the_worker_s_package_settings_come_from_berth_worker_variables(monkeypatch, tmp_path):
    from workers.config import WorkerConfig

    monkeypatch.setenv("BERTH_WORKER_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("BERTH_WORKER_PACKAGE_CACHE_MAX_BYTES", "1000000")
    monkeypatch.setenv("BERTH_WORKER_PACKAGE_REGISTRIES", '{"npm": "http://127.0.0.1:4873/"}')

    config = WorkerConfig(api_url="http://127.0.0.1:7500")

    assert config.package_cache_root == tmp_path / "packages"
    assert config.package_cache_max_bytes == 1_000_000
    assert config.package_registries == {"npm": "http://127.0.0.1:4873/"}
    monkeypatch.setenv("BERTH_WORKER_PACKAGE_REGISTRIES", '{"npm": "file:///etc"}')
    with pytest.raises(ValueError, match="package_registries"):
        WorkerConfig(api_url="http://127.0.0.1:7500")
