"""The curated catalog: server.json documents, valid against the schema kept in the repo, loaded
as typed entries whose packages are the worker contract's package specs."""

import json

import pytest

from app.catalog import CatalogEntry, ServerDocument, curated_servers, load_documents, server_json_errors
from app.catalog.servers import CURATED_SERVERS_DIR
from app.contract.packages import PackageSpec
from tests.support.registry_server import registry_servers

CURATED_FILES = sorted(CURATED_SERVERS_DIR.glob("*.json"))


@pytest.mark.parametrize("path", CURATED_FILES, ids=lambda path: path.name)
def test_every_curated_document_is_valid_server_json(path):
    assert server_json_errors(json.loads(path.read_text())) == []


def test_every_document_the_test_registry_serves_is_valid_server_json():
    for document in registry_servers("http://127.0.0.1:1/mcp"):
        assert server_json_errors(document) == [], document["name"]


def test_the_catalog_offers_the_issue_s_servers_a_secret_and_a_remote():
    entries = {entry.id: entry for entry in curated_servers()}
    packages = {(package.registry_type, package.identifier)
                for entry in entries.values() for package in entry.document.packages}

    assert {("pypi", "mcp-server-time"), ("npm", "@modelcontextprotocol/server-everything")} <= packages
    secrets = [variable.name for entry in entries.values() for package in entry.document.packages
               for variable in package.environment_variables if variable.is_required and variable.is_secret]
    assert "BRAVE_API_KEY" in secrets
    assert any(entry.document.remotes for entry in entries.values())


def test_entries_are_typed_and_their_packages_are_the_contract_s_package_specs():
    time_entry = next(entry for entry in curated_servers() if entry.id == "io.github.modelcontextprotocol/time")

    assert isinstance(time_entry, CatalogEntry)
    assert time_entry.kind == "mcp_server"
    assert time_entry.title == "Time"
    assert time_entry.tags == ["time", "utilities"]
    package = time_entry.document.packages[0]
    assert isinstance(package, PackageSpec)
    assert (package.registry_type, package.version, package.runtime_hint) == ("pypi", "2026.10.19", "uvx")
    assert package.command_arguments() == []  # --local-timezone is optional and has no value


def test_a_document_round_trips_to_valid_server_json():
    for entry in curated_servers():
        assert server_json_errors(entry.document.document()) == [], entry.id


@pytest.mark.parametrize(("change", "where"), [
    ({"name": "no-namespace"}, "name"),
    ({"description": ""}, "description"),
    ({"version": "^1.0.0"}, "version"),
    ({"packages": [{"registryType": "npm", "identifier": "x", "version": "latest", "transport": {"type": "stdio"}}]},
     "packages/0/version"),
    ({"packages": [{"registryType": "npm", "identifier": "x", "version": "1.0.0"}]}, "packages/0"),
    ({"packages": [{"registryType": "npm", "identifier": "x", "version": "1.0.0", "transport": {"type": "stdio"},
                    "entrypoint": "x"}]}, "packages/0"),
    ({"remotes": [{"type": "streamable-http", "url": "ftp://example.com/mcp"}]}, "remotes/0/url"),
    ({"_meta": {"dev.berth/catalog": {"tags": ["Not A Tag"]}}}, "_meta/dev.berth/catalog/tags/0"),
])
def test_the_schema_says_where_a_document_goes_wrong(change, where):
    document = {**json.loads(CURATED_FILES[0].read_text()), **change}

    errors = server_json_errors(document)

    assert errors and all(error.startswith(f"{where}:") for error in errors), errors


def test_a_version_range_is_explained_not_just_refused():
    document = {**json.loads(CURATED_FILES[0].read_text()), "version": "1.x"}

    assert server_json_errors(document) == \
        ["version: '1.x' is not one exact version (no ranges, wildcards or 'latest')"]


def test_the_loader_takes_any_record_type_so_models_can_sit_beside_servers(tmp_path):
    (tmp_path / "b.json").write_text(json.dumps(registry_servers("http://127.0.0.1:1/mcp")[0]))
    (tmp_path / "a.json").write_text(json.dumps(registry_servers("http://127.0.0.1:1/mcp")[-1]))
    (tmp_path / "notes.txt").write_text("not a document")

    documents = load_documents(tmp_path, ServerDocument)

    assert [document.name for document in documents] == ["dev.berth.test/remote-echo",
                                                           "io.github.modelcontextprotocol/time"]


def test_a_malformed_catalog_file_is_named_in_the_error(tmp_path):
    (tmp_path / "broken.json").write_text('{"name": "a/b", "description": "x"}')

    with pytest.raises(ValueError, match="broken.json"):
        load_documents(tmp_path, ServerDocument)
