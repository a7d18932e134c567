"""The package spec of the worker contract: server.json's `packages[]` entries, and the npx/uvx
start commands that mean the same thing."""

import pytest
from pydantic import ValidationError

from app.contract.packages import PackageSpec, PackageSpecError, parse_start_command


def test_npx_with_a_version_and_arguments_is_the_registry_package_it_names():
    registry_entry = PackageSpec.model_validate({
        "registryType": "npm", "identifier": "@modelcontextprotocol/server-everything", "version": "2026.8.31",
        "runtimeHint": "npx", "transport": {"type": "stdio"},
        "packageArguments": [{"type": "positional", "value": "stdio"}],
    })

    parsed = parse_start_command("npx -y @modelcontextprotocol/server-everything@2026.8.31 stdio")

    assert parsed == registry_entry
    assert parsed.command_arguments() == ["stdio"]


def test_uvx_with_an_exact_version_is_the_registry_package_it_names():
    registry_entry = PackageSpec.model_validate({
        "registryType": "pypi", "identifier": "mcp-server-time", "version": "2026.10.19", "runtimeHint": "uvx",
        "transport": {"type": "stdio"},
    })

    assert parse_start_command("uvx mcp-server-time==2026.10.19") == registry_entry
    assert parse_start_command("uvx mcp-server-time@2026.10.19") == registry_entry


@pytest.mark.parametrize("command", ["npx -y @modelcontextprotocol/server-memory", "npx server-memory@latest",
                                     "uvx mcp-server-fetch", "uvx mcp-server-fetch@latest"])
def test_a_start_command_without_a_version_means_the_latest_which_the_worker_resolves(command):
    assert parse_start_command(command).version is None


@pytest.mark.parametrize("command", ["python server.py", "node dist/index.js", "bash -c 'echo hi'"])
def test_other_start_commands_are_not_packages(command):
    assert parse_start_command(command) is None


@pytest.mark.parametrize(("command", "reason"), [
    ("npx -y ../x", "not a valid npm package name: '../x'"),
    ("npx -y @scope/../../etc", "not a valid npm package name"),
    ("npx --foo", "npx option '--foo' is not supported"),
    ("npx -y --registry=http://evil.example pkg", "npx option '--registry=http://evil.example' is not supported"),
    ("uvx --from evil mcp-server", "uvx option '--from' is not supported"),
    ("npx -y 'a b'", "not a valid npm package name: 'a b'"),
    ("uvx 'mcp server'", "not a valid PyPI package name: 'mcp server'"),
    ("uvx 'x;rm -rf /'", "not a valid PyPI package name"),
    ("npx -y pkg@^1.2.0", "not an exact npm version: '^1.2.0'"),
    ("npx -y pkg@next", "not an exact npm version: 'next'"),
    ("uvx 'pkg>=1.0'", "only an exact version"),
    ("uvx pkg==1.*", "not an exact pypi version: '1.*'"),
    ("npx -y", "npx names no package"),
    ("uvx 'unclosed", "cannot be parsed"),
])
def test_odd_names_versions_and_options_never_reach_an_installer(command, reason):
    with pytest.raises(PackageSpecError, match=reason.replace("*", r"\*").replace("^", r"\^")):
        parse_start_command(command)


@pytest.mark.parametrize(("registry_type", "identifier", "version"), [
    ("npm", "--save", "1.0.0"),
    ("npm", "UPPER/case", "1.0.0"),
    ("pypi", "-r requirements.txt", "1.0"),
    ("pypi", "pkg", "latest"),
    ("npm", "pkg", "1.0.0 || 2.0.0"),
])
def test_a_package_object_is_held_to_the_same_rules(registry_type, identifier, version):
    with pytest.raises(ValidationError):
        PackageSpec(registry_type=registry_type, identifier=identifier, version=version)


def test_pypi_names_compare_as_pypi_indexes_them():
    assert PackageSpec(registry_type="pypi", identifier="MCP_Server.Time").canonical_name == "mcp-server-time"


def test_registry_types_the_worker_does_not_install_still_parse_so_the_worker_can_refuse_them_by_name():
    spec = PackageSpec(registry_type="oci", identifier="docker.io/mcp/brave-search:latest", version="1.0.0")

    assert spec.registry_type == "oci"


def test_package_arguments_become_argv_items_in_order_with_defaults_and_fixed_values():
    spec = PackageSpec.model_validate({"registryType": "npm", "identifier": "pkg", "version": "1.0.0",
                                       "packageArguments": [
                                           {"type": "named", "name": "--transport", "value": "stdio"},
                                           {"type": "named", "name": "--log-level", "default": "info"},
                                           {"type": "named", "name": "--optional", "valueHint": "x"},
                                           {"type": "positional", "valueHint": "dir", "default": "/sandbox"},
                                       ]})

    assert spec.command_arguments() == ["--transport", "stdio", "--log-level", "info", "/sandbox"]


def test_a_required_argument_without_a_value_is_an_error_before_anything_installs():
    spec = PackageSpec.model_validate({"registryType": "npm", "identifier": "pkg", "version": "1.0.0",
                                       "packageArguments": [{"type": "positional", "valueHint": "allowed_dir",
                                                             "isRequired": True}]})

    with pytest.raises(PackageSpecError, match="allowed_dir needs a value"):
        spec.command_arguments()


def test_the_environment_is_defaults_then_what_was_supplied_then_fixed_values_and_required_ones_must_be_set():
    spec = PackageSpec.model_validate({"registryType": "npm", "identifier": "pkg", "version": "1.0.0",
                                       "environmentVariables": [
                                           {"name": "API_KEY", "isRequired": True, "isSecret": True},
                                           {"name": "LOG_LEVEL", "default": "info"},
                                           {"name": "MODE", "value": "server"},
                                       ]})

    assert spec.environment({"API_KEY": "k", "LOG_LEVEL": "debug", "MODE": "mine"}) == \
        {"API_KEY": "k", "LOG_LEVEL": "debug", "MODE": "server"}
    with pytest.raises(PackageSpecError, match="required environment variable not set: API_KEY"):
        spec.environment({})


@pytest.mark.parametrize("name", ["LD-PRELOAD", "1ABC"])
def test_environment_variable_names_must_be_names(name):
    with pytest.raises(ValidationError, match="not an environment variable name"):
        PackageSpec.model_validate({"registryType": "npm", "identifier": "pkg", "version": "1.0.0",
                                    "environmentVariables": [{"name": name}]})


def test_nul_characters_cannot_hide_in_argument_values():
    with pytest.raises(ValidationError, match="NUL"):
        PackageSpec.model_validate({"registryType": "npm", "identifier": "pkg", "version": "1.0.0",
                                    "packageArguments": [{"type": "positional", "value": "a\x00b"}]})
