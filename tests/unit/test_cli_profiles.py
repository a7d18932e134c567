"""The CLI's profile file: private, written atomically, shared safely, overridden by the
environment."""

import json
import os
import stat
import threading

import pytest

from berth_cli.errors import NotConfigured, ProfileFileError
from berth_cli.profiles import Profile, ProfileStore, config_dir, resolve

ADA = Profile(api_url="http://127.0.0.1:7500", api_key="bak_ada", email="ada@example.com", key_id="key_1",
              key_name="cli@host", tier="standard")


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch):
    for name in ("BERTH_API_URL", "BERTH_API_KEY", "BERTH_CONFIG_DIR", "BERTH_PROFILE"):
        monkeypatch.delenv(name, raising=False)


def mode(path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_a_saved_profile_is_0600_in_a_0700_directory_whatever_the_umask(tmp_path):
    previous = os.umask(0)  # the most permissive umask: the modes must not come from it
    try:
        store = ProfileStore(tmp_path / "config" / "berth")
        store.save("default", ADA)
    finally:
        os.umask(previous)
    assert mode(store.directory) == 0o700
    assert mode(store.path) == 0o600
    assert store.get("default") == ADA


def test_a_config_directory_that_others_can_enter_is_tightened(tmp_path):
    directory = tmp_path / "berth"
    directory.mkdir(mode=0o755)
    directory.chmod(0o755)
    ProfileStore(directory).save("default", ADA)
    assert mode(directory) == 0o700


def test_a_profile_file_others_can_read_is_refused_with_what_to_do(tmp_path):
    store = ProfileStore(tmp_path)
    store.save("default", ADA)
    store.path.chmod(0o644)
    with pytest.raises(ProfileFileError) as refused:
        store.get("default")
    assert "chmod 600" in refused.value.message and str(store.path) in refused.value.message
    with pytest.raises(ProfileFileError):  # nor is it written over, keeping whatever leaked in view
        store.save("other", ADA)


def test_saving_renames_a_complete_new_file_over_the_old_one(tmp_path):
    store = ProfileStore(tmp_path)
    store.save("default", ADA)
    before = store.path.stat().st_ino
    store.save("staging", Profile(api_url="https://berth.example.com", api_key="bak_staging"))
    assert store.path.stat().st_ino != before  # a new file renamed into place, not the old one rewritten
    document = json.loads(store.path.read_text())
    assert document["version"] == 1 and set(document["profiles"]) == {"default", "staging"}
    assert [p.name for p in tmp_path.iterdir() if p.name.endswith(".tmp")] == []


def test_a_write_that_fails_leaves_the_old_file_whole_and_no_temporary_behind(tmp_path, monkeypatch):
    store = ProfileStore(tmp_path)
    store.save("default", ADA)
    original = store.path.read_bytes()

    def disk_full(*_args):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", disk_full)
    with pytest.raises(OSError):
        store.save("staging", Profile(api_url="https://berth.example.com", api_key="bak_staging"))
    assert store.path.read_bytes() == original
    assert sorted(p.name for p in tmp_path.iterdir()) == [".profiles.lock", "profiles.json"]


def test_profiles_saved_at_the_same_time_all_survive(tmp_path):
    store = ProfileStore(tmp_path)

    def save_many(prefix: str) -> None:
        for number in range(15):
            ProfileStore(tmp_path).save(f"{prefix}{number}", Profile(api_url="http://a", api_key=f"bak_{prefix}"))

    threads = [threading.Thread(target=save_many, args=(prefix,)) for prefix in "abcd"]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(store.load()) == 60


def test_removing_a_profile_keeps_the_others(tmp_path):
    store = ProfileStore(tmp_path)
    store.save("default", ADA)
    store.save("staging", Profile(api_url="https://berth.example.com", api_key="bak_staging"))
    assert store.remove("default") == ADA
    assert store.remove("default") is None
    assert list(store.load()) == ["staging"]


def test_a_file_that_is_not_a_profile_file_is_reported_not_overwritten(tmp_path):
    store = ProfileStore(tmp_path)
    store.path.write_text("{not json")
    store.path.chmod(0o600)
    with pytest.raises(ProfileFileError) as refused:
        store.save("default", ADA)
    assert str(store.path) in refused.value.message
    assert store.path.read_text() == "{not json"


def test_the_config_directory_is_berth_config_dir_else_xdg_config_home(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))
    assert config_dir() == tmp_path / "xdg" / "berth"
    monkeypatch.setenv("BERTH_CONFIG_DIR", str(tmp_path / "mine"))
    assert config_dir() == tmp_path / "mine"
    assert ProfileStore().path == tmp_path / "mine" / "profiles.json"


def test_the_environment_overrides_the_profile_one_setting_at_a_time(tmp_path, monkeypatch):
    store = ProfileStore(tmp_path)
    store.save("default", ADA)
    assert (resolve("default", store).api_url, resolve("default", store).api_key) == (ADA.api_url, "bak_ada")

    monkeypatch.setenv("BERTH_API_KEY", "bak_from_ci")
    connection = resolve("default", store)
    assert (connection.api_url, connection.api_key) == (ADA.api_url, "bak_from_ci")
    assert "BERTH_API_KEY" in connection.source

    monkeypatch.setenv("BERTH_API_URL", "https://berth.example.com")
    store.path.write_text("{broken")  # with both set, the file is not even read
    connection = resolve("default", store)
    assert (connection.api_url, connection.api_key) == ("https://berth.example.com", "bak_from_ci")


def test_without_a_profile_or_the_environment_the_error_says_how_to_log_in(tmp_path, monkeypatch):
    store = ProfileStore(tmp_path)
    with pytest.raises(NotConfigured) as missing:
        resolve("staging", store)
    assert "no profile 'staging'" in missing.value.message and "berth login" in missing.value.message
    monkeypatch.setenv("BERTH_API_KEY", "bak_from_ci")
    with pytest.raises(NotConfigured) as no_url:
        resolve("staging", store)
    assert "BERTH_API_URL" in no_url.value.message
