"""Private files: berth's local state is written 0600 in 0700 directories, whole or not at all."""

import os
import stat
import threading
from pathlib import Path

import pytest

from app.files import private_directory, write_private


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_a_private_file_is_0600_in_directories_made_0700(tmp_path):
    target = tmp_path / "data" / "state" / "keys.json"
    write_private(target, '{"material": "00ff"}')
    assert target.read_text() == '{"material": "00ff"}'
    assert _mode(target) == 0o600
    assert _mode(tmp_path / "data") == _mode(tmp_path / "data" / "state") == 0o700


def test_rewriting_a_file_once_world_readable_leaves_it_private(tmp_path):
    target = tmp_path / "snapshot.jsonl"
    target.write_text("old\n")
    os.chmod(target, 0o644)
    write_private(target, b"new\n")
    assert target.read_bytes() == b"new\n" and _mode(target) == 0o600


def test_a_failed_write_leaves_the_old_file_whole_and_no_temporary(tmp_path):
    target = tmp_path / "snapshot.jsonl"
    write_private(target, "old\n")
    with pytest.raises(TypeError):
        write_private(target, 42)  # type: ignore[arg-type]  # neither str nor bytes: fails mid-write
    assert target.read_text() == "old\n"
    assert [p.name for p in tmp_path.iterdir()] == ["snapshot.jsonl"]


def test_concurrent_writers_of_one_file_never_mix_their_contents(tmp_path):
    target = tmp_path / "kms.json"
    contents = [str(n) * 100_000 for n in range(8)]
    threads = [threading.Thread(target=write_private, args=(target, text)) for text in contents]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert target.read_text() in contents
    assert [p.name for p in tmp_path.iterdir()] == ["kms.json"]


def test_a_data_directory_from_before_is_narrowed_with_its_files(tmp_path):
    data_dir = tmp_path / "berth"
    data_dir.mkdir(mode=0o755)
    os.chmod(data_dir, 0o755)
    (data_dir / "dynamodb.jsonl").write_text("{}\n")
    os.chmod(data_dir / "dynamodb.jsonl", 0o644)
    (data_dir / "worker").mkdir()
    private_directory(data_dir)
    assert _mode(data_dir) == 0o700 and _mode(data_dir / "dynamodb.jsonl") == 0o600
    assert private_directory(tmp_path / "new" / "state") == tmp_path / "new" / "state"
    assert _mode(tmp_path / "new") == _mode(tmp_path / "new" / "state") == 0o700


def test_a_shared_directory_such_as_tmp_is_never_narrowed(tmp_path):
    shared = tmp_path / "shared"
    shared.mkdir()
    os.chmod(shared, 0o1777)
    (shared / "someone-elses.txt").write_text("theirs")
    os.chmod(shared / "someone-elses.txt", 0o644)
    with pytest.raises(PermissionError, match="shared directory"):
        private_directory(shared)
    assert _mode(shared) == 0o1777
    assert _mode(shared / "someone-elses.txt") == 0o644
