"""An installation's configuration: what a server declares it takes, how values are checked,
where secret ones go (never into the package a job carries), and searching the marketplace."""

import pytest

from app.catalog import curated_servers
from app.contract.packages import PackageSpec
from app.domain.installations import (
    ConfigProblem,
    Installation,
    package_inputs,
    package_launch,
    remote_headers,
    remote_inputs,
    remote_url,
    resolve_config,
    secret_hint,
)
from app.domain.marketplace import (
    EntrySummary,
    InvalidCursor,
    decode_cursor,
    page_after,
    versions_after_refresh,
    winning_origin,
)


def _package(**extra) -> PackageSpec:
    return PackageSpec.model_validate({"registryType": "npm", "identifier": "@acme/server", "version": "1.2.3",
                                       **extra})


SEARCH = _package(
    environmentVariables=[
        {"name": "API_KEY", "isRequired": True, "isSecret": True},
        {"name": "LOG_LEVEL", "default": "info", "choices": ["debug", "info"]},
        {"name": "AUTH_HEADER", "value": "Bearer {token}", "variables": {"token": {"isSecret": True}}},
        {"name": "FIXED", "value": "yes"},
    ],
    packageArguments=[
        {"type": "named", "name": "--transport", "value": "stdio"},
        {"type": "named", "name": "--port", "valueHint": "port", "format": "number"},
        {"type": "positional", "valueHint": "root", "default": "/sandbox", "isRequired": True},
    ])


def _entry(curated_id: str):
    return next(entry.document for entry in curated_servers() if entry.id == curated_id)


def test_a_package_takes_its_variables_its_templates_variables_and_its_arguments_hints_but_no_fixed_value():
    inputs = {found.name: found for found in package_inputs(SEARCH)}

    assert sorted(inputs) == ["API_KEY", "LOG_LEVEL", "port", "root", "token"]
    assert inputs["API_KEY"].secret and inputs["API_KEY"].needed
    assert inputs["token"].secret and inputs["token"].kind == "env"
    assert not inputs["root"].needed  # required, but its default serves
    assert inputs["port"].kind == "argument" and inputs["port"].format == "number"


def test_unknown_missing_and_out_of_range_values_are_refused_by_name():
    inputs = package_inputs(SEARCH)
    with pytest.raises(ConfigProblem, match="unknown setting NOPE: this server takes API_KEY, LOG_LEVEL"):
        resolve_config(inputs, {"API_KEY": "k", "NOPE": "x"})
    with pytest.raises(ConfigProblem, match="required setting not given: API_KEY"):
        resolve_config(inputs, {})
    with pytest.raises(ConfigProblem, match="LOG_LEVEL must be one of debug, info"):
        resolve_config(inputs, {"API_KEY": "k", "LOG_LEVEL": "loud"})
    with pytest.raises(ConfigProblem, match="port must be a number"):
        resolve_config(inputs, {"API_KEY": "k", "port": "eighty"})


def test_secret_values_are_kept_apart_and_a_change_can_remove_a_value():
    inputs = package_inputs(SEARCH)
    first = resolve_config(inputs, {"API_KEY": "sk-1", "LOG_LEVEL": "debug", "token": "t-1"})
    assert first.public == {"LOG_LEVEL": "debug"}
    assert first.secret == {"API_KEY": "sk-1", "token": "t-1"}

    changed = resolve_config(inputs, {"LOG_LEVEL": None, "API_KEY": "sk-2"}, public=first.public, secret=first.secret)
    assert changed.public == {} and changed.secret == {"API_KEY": "sk-2", "token": "t-1"}
    with pytest.raises(ConfigProblem, match="required setting not given: API_KEY"):
        resolve_config(inputs, {"API_KEY": None}, public=first.public, secret=first.secret)


def test_a_per_user_entry_leaves_missing_secrets_to_the_users_sign_in():
    github = _entry("io.github.github/github-mcp-server").remotes[0]
    inputs = remote_inputs(github.headers, github.variables)

    assert [(found.name, found.secret, found.kind) for found in inputs] == [("token", True, "header")]
    assert resolve_config(inputs, {}, per_user=True).pending == ["token"]
    assert resolve_config(inputs, {"token": "ghp"}, per_user=True).pending == []
    with pytest.raises(ConfigProblem):
        resolve_config(inputs, {})


def test_the_package_a_job_carries_holds_the_values_but_never_a_secret():
    resolved = resolve_config(package_inputs(SEARCH), {"API_KEY": "sk-secret", "token": "t-secret", "port": "8080"})
    launch = package_launch(SEARCH, resolved.public, resolved.secret)

    assert launch.secret_env == {"API_KEY": "sk-secret", "AUTH_HEADER": "Bearer t-secret"}
    carried = launch.package.model_dump_json()
    assert "sk-secret" not in carried and "t-secret" not in carried
    assert launch.package.command_arguments() == ["--transport", "stdio", "--port", "8080", "/sandbox"]
    assert launch.package.environment(launch.secret_env) == {
        "LOG_LEVEL": "info", "API_KEY": "sk-secret", "AUTH_HEADER": "Bearer t-secret", "FIXED": "yes"}


def test_a_secret_command_line_argument_makes_an_entry_uninstallable():
    leaky = _package(packageArguments=[{"type": "named", "name": "--api-key", "valueHint": "api_key",
                                        "isSecret": True}])
    with pytest.raises(ConfigProblem, match="as a command-line argument"):
        package_inputs(leaky)


def test_remote_headers_and_url_take_the_values():
    github = _entry("io.github.github/github-mcp-server").remotes[0]
    assert remote_headers(github.headers, {"token": "ghp_x"}) == {"Authorization": "Bearer ghp_x"}
    assert remote_url("https://{tenant}.example.com/mcp", {}, {"tenant": "acme"}) == "https://acme.example.com/mcp"
    with pytest.raises(ConfigProblem, match="needs tenant"):
        remote_url("https://{tenant}.example.com/mcp", {}, {})


def test_a_hint_gives_nothing_of_a_short_secret_away():
    assert secret_hint("short-secret") == "set"
    assert secret_hint("a-long-enough-secret-1234") == "…1234"


def test_a_users_installation_serves_that_user_alone():
    def installation(scope, user_id=None):
        return Installation(installation_id="ins_1", workspace_id="ws", entry_id="e", entry_version="1", origin="o",
                            title="t", kind="package", target={}, scope=scope, user_id=user_id, created_at="",
                            updated_at="")

    assert installation("workspace").usable_by(None)
    assert installation("user", "usr_a").usable_by("usr_a")
    assert not installation("user", "usr_a").usable_by("usr_b")
    assert not installation("user", "usr_a").usable_by(None)


# --- the marketplace ----------------------------------------------------------------------------


def test_search_wants_every_word_and_every_filter():
    summary = EntrySummary(entry_id="io.github.acme/search", title="Acme Search", description="Web search.",
                           tags=("search", "web"), registry_types=("npm",), transports=("stdio",),
                           identifiers=("@acme/search-mcp",))
    assert summary.matches(text="ACME web")
    assert summary.matches(text="search-mcp", registry_type="npm", transport="stdio", tags=["Web"])
    assert not summary.matches(text="acme images")
    assert not summary.matches(registry_type="pypi")
    assert not summary.matches(transport="streamable-http")
    assert not summary.matches(tags=["web", "files"])


def test_pages_follow_the_last_name_seen_so_a_changed_listing_neither_repeats_nor_skips():
    names = ["a", "b", "c", "d", "e"]
    first, cursor = page_after(names, str, None, 2)
    assert first == ["a", "b"] and cursor
    second, cursor = page_after(["a", "aa", "c", "d", "e"], str, cursor, 2)  # b went, aa came
    assert second == ["c", "d"]
    last, cursor = page_after(names, str, cursor, 2)
    assert last == ["e"] and cursor is None
    with pytest.raises(InvalidCursor):
        decode_cursor("%%%")


def test_versions_are_remembered_newest_first_and_the_first_registry_configured_wins():
    assert versions_after_refresh(["1.0.0"], "1.1.0") == ["1.1.0", "1.0.0"]
    assert versions_after_refresh(["1.1.0", "1.0.0"], "1.1.0") == ["1.1.0", "1.0.0"]
    origins = ["https://first", "https://second"]
    assert winning_origin(origins, None, "https://second")
    assert winning_origin(origins, "https://second", "https://first")
    assert not winning_origin(origins, "https://first", "https://second")
    assert winning_origin(origins, "https://gone", "https://second")
