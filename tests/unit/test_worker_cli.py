"""The worker's command line is WorkerConfig: every setting a flag and a BERTH_WORKER_* variable,
listed by `--help` with its help, flags over variables over defaults, and a bad value refused
with exit 2 without being quoted back (it may be the join token)."""

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from pydantic import SecretStr
from typer.testing import CliRunner

from berth_cli.app import cli
from workers.__main__ import PLACEHOLDERS, command_line, main, settings
from workers.config import WorkerConfig

SECRET = "bjt_s3cret-join-token-0123456789"

# Per setting: what a flag takes (a list: a repeatable flag given once, or no value), what its
# variable takes, and the value both must give. A new setting fails the coverage test until it
# has a line here.
SAMPLES: dict[str, tuple[list[str], str, object]] = {
    "api_url": (["http://api.test:7500"], "http://api.test:7500", "http://api.test:7500"),
    "join_token": ([SECRET], SECRET, SECRET),
    "name": (["gpu-host-7"], "gpu-host-7", "gpu-host-7"),
    "data_dir": (["/var/lib/berth-worker"], "/var/lib/berth-worker", Path("/var/lib/berth-worker")),
    "max_concurrent_jobs": (["7"], "7", 7),
    "queue_mode": (["sqs"], "sqs", "sqs"),
    "labels": (["zone=lab"], '{"zone": "lab"}', {"zone": "lab"}),
    "heartbeat_interval_seconds": (["3"], "3", 3),
    "visibility_seconds": (["60"], "60", 60),
    "poll_wait_seconds": (["4"], "4", 4),
    "stop_grace_seconds": (["2.5"], "2.5", 2.5),
    "cancel_grace_seconds": (["1.5"], "1.5", 1.5),
    "flush_timeout_seconds": (["3.5"], "3.5", 3.5),
    "retry_max_seconds": (["9"], "9", 9.0),
    "log_level": (["debug"], "debug", "DEBUG"),
    "sandbox_tool_dirs": (["/opt/mcp"], '["/opt/mcp"]', [Path("/opt/mcp")]),
    "allow_unisolated_sandboxes": ([], "true", True),
    "package_cache_dir": (["/var/cache/berth"], "/var/cache/berth", Path("/var/cache/berth")),
    "package_cache_max_bytes": (["1048576"], "1048576", 1048576),
    "package_registries": (['{"pypi": "https://pypi.internal/simple"}'], '{"pypi": "https://pypi.internal/simple"}',
                           {"pypi": "https://pypi.internal/simple"}),
    "vllm_command": (["/opt/vllm/bin/vllm serve"], "/opt/vllm/bin/vllm serve", "/opt/vllm/bin/vllm serve"),
    "model_volume_roots": (["/models"], '["/models"]', [Path("/models")]),
    "control_listen": (["127.0.0.1:7601"], "127.0.0.1:7601", "127.0.0.1:7601"),
    "control_url": (["http://10.0.3.7:7601"], "http://10.0.3.7:7601", "http://10.0.3.7:7601"),
    "control_host_from_ec2_metadata": ([], "true", True),
    "die_with_parent": ([], "true", True),
}


def flag(field: str) -> str:
    return "--" + field.replace("_", "-")


def variable(field: str) -> str:
    return "BERTH_WORKER_" + field.upper()


def value_of(config: WorkerConfig, field: str) -> object:
    value = getattr(config, field)
    return value.get_secret_value() if isinstance(value, SecretStr) else value


def squeezed(text: str) -> str:
    """Text without whitespace, so that help wrapped at any column still matches."""
    return "".join(text.split())


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch):
    for name in [n for n in os.environ if n.startswith("BERTH_")]:
        monkeypatch.delenv(name)
    # What every case needs besides the setting it is about: an API, and a control endpoint for
    # the control_url settings to describe.
    monkeypatch.setenv(variable("api_url"), "http://base.test")
    monkeypatch.setenv(variable("control_listen"), "127.0.0.1:0")


def test_every_setting_has_a_sample_here():
    assert set(SAMPLES) == set(WorkerConfig.model_fields)


@pytest.mark.parametrize("field", SAMPLES)
def test_every_setting_is_a_flag(field):
    arguments, _, expected = SAMPLES[field]
    assert value_of(settings([flag(field), *arguments]), field) == expected


@pytest.mark.parametrize("field", SAMPLES)
def test_every_setting_is_a_variable(field, monkeypatch):
    _, text, expected = SAMPLES[field]
    monkeypatch.setenv(variable(field), text)
    assert value_of(settings([]), field) == expected


def test_the_short_flags_of_the_earlier_command_line_still_work():
    config = settings(["--api", "http://api.test", "--label", "zone=lab", "--label", "gpu=a100",
                       "--sandbox-tool-dir", "/opt/a", "--sandbox-tool-dir", "/opt/b"])
    assert config.api_url == "http://api.test"
    assert config.labels == {"zone": "lab", "gpu": "a100"}
    assert config.sandbox_tool_dirs == [Path("/opt/a"), Path("/opt/b")]


def test_a_flag_overrides_its_variable_which_overrides_the_default(monkeypatch):
    assert settings([]).max_concurrent_jobs == WorkerConfig.model_fields["max_concurrent_jobs"].default
    monkeypatch.setenv(variable("max_concurrent_jobs"), "5")
    assert settings([]).max_concurrent_jobs == 5
    assert settings(["--max-concurrent-jobs", "7"]).max_concurrent_jobs == 7


def test_the_data_directory_follows_the_stacks_unless_the_worker_is_given_its_own(monkeypatch, tmp_path):
    assert settings([]).data_dir == Path.home() / ".berth" / "worker"
    monkeypatch.setenv("BERTH_DATA_DIR", str(tmp_path / "stack"))
    assert settings([]).data_dir == tmp_path / "stack" / "worker"
    monkeypatch.setenv(variable("data_dir"), str(tmp_path / "mine"))
    assert settings([]).data_dir == tmp_path / "mine"
    assert settings(["--data-dir", str(tmp_path / "flag")]).data_dir == tmp_path / "flag"


def test_help_lists_every_setting_with_its_help_and_its_variable(capsys):
    assert main(["--help"]) == 0
    shown = squeezed(capsys.readouterr().out)
    for field, info in WorkerConfig.model_fields.items():
        assert info.description, f"{field} has no help"
        assert squeezed(flag(field)) in shown and variable(field) in shown, field
        assert squeezed(info.description) in shown, field


def test_berth_worker_help_is_the_workers_own_under_the_name_it_was_run_by():
    berth = CliRunner().invoke(cli, ["worker", "--help"])
    assert berth.exit_code == 0
    assert berth.output.startswith("usage: berth worker ")
    assert all(flag(field) in squeezed(berth.output) for field in WorkerConfig.model_fields)
    module = subprocess.run([sys.executable, "-m", "workers", "--help"], capture_output=True, text=True,
                            timeout=60, check=True)
    assert module.stdout.startswith("usage: python -m workers ")
    assert squeezed(module.stdout.replace("python -m workers", "berth worker")) == squeezed(berth.output)


def test_a_mistake_points_at_the_help_of_the_command_that_was_run():
    berth = CliRunner().invoke(cli, ["worker", "--api-urll", "http://x.test"])
    assert berth.exit_code == 2 and "unknown option --api-urll (see berth worker --help)" in berth.output


def test_every_flag_that_takes_a_value_shows_what_the_value_is_not_its_type(capsys):
    assert main(["--help"]) == 0
    shown = capsys.readouterr().out
    assert "--api-url URL" in shown and "--join-token TOKEN" in shown and "--data-dir DIR" in shown
    assert "--control-listen HOST:PORT" in shown and "--label KEY=VALUE" in shown
    assert "--queue-mode {sqs,lease}" in shown  # choices say it best
    placeholders = {action.dest: action.metavar for action in command_line().root_parser._actions
                    if action.dest in WorkerConfig.model_fields and action.nargs != 0}
    assert placeholders == {**PLACEHOLDERS, "queue_mode": "{sqs,lease}"}
    usage = shown.split("\n\n")[0]
    assert not re.search(r"\b(str|SecretStr|Path|int|float|dict|list)\b", usage), usage


def test_repeatable_flags_take_one_value_each():
    config = settings(["--package-registries", "pypi=https://pypi.internal/simple",
                       "--package-registries", "npm=https://npm.internal/",
                       "--model-volume-roots", "/models/a", "--model-volume-roots", "/models/b"])
    assert config.package_registries == {"pypi": "https://pypi.internal/simple", "npm": "https://npm.internal/"}
    assert config.model_volume_roots == [Path("/models/a"), Path("/models/b")]


@pytest.mark.parametrize("arguments, names", [
    (["--max-concurrent-jobs", SECRET], "max_concurrent_jobs"),
    (["--queue-mode", SECRET], "queue_mode"),
    (["--log-level", SECRET], "log_level"),
    (["--label", SECRET], "labels"),
    (["--control-listen", SECRET], "control_listen"),
    (["--control-listen", f"{SECRET}:1"], "control_listen"),
    (["--control-url", SECRET], "control_url"),
    (["--join-tokn", SECRET], "--join-tokn"),
    ([f"--join-tokn={SECRET}"], "--join-tokn"),
    ([SECRET], "unexpected argument"),
    ([f"--control-host-from-ec2-metadata={SECRET}"], "--control-host-from-ec2-metadata"),
    (["--join-token"], "--join-token"),
])
def test_a_bad_value_is_named_and_exits_2_without_being_quoted_back(arguments, names, capsys):
    assert main(arguments) == 2
    said = capsys.readouterr()
    assert names in said.err and said.out == ""
    assert SECRET not in said.err and SECRET[4:20] not in said.err


def test_a_bad_variable_is_named_and_exits_2_without_being_quoted_back(monkeypatch, capsys):
    monkeypatch.setenv(variable("max_concurrent_jobs"), SECRET)
    assert main([]) == 2
    said = capsys.readouterr().err
    assert "max_concurrent_jobs" in said and SECRET not in said


def test_a_missing_api_url_is_named(monkeypatch, capsys):
    monkeypatch.delenv(variable("api_url"))
    assert main([]) == 2
    assert "api_url" in capsys.readouterr().err
