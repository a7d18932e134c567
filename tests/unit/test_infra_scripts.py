"""The deploy scripts answer `--help` and change nothing without an explicit command.

`sam` and `aws` on the PATH are stand-ins that record being called, so a test can tell whether a
script would have touched AWS."""

import os
import stat
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[2]


@pytest.fixture
def recording_tools(tmp_path):
    """A PATH whose `sam` and `aws` only write down that they ran."""
    calls = tmp_path / "calls"
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for tool in ("sam", "aws", "cfn-lint"):
        script = bin_dir / tool
        script.write_text(f'#!/bin/sh\necho "{tool} $*" >> "{calls}"\n')
        script.chmod(script.stat().st_mode | stat.S_IEXEC)
    environment = {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}", "MAIL_FROM": "berth <x@example.com>"}
    return environment, calls


def run(script: str, *args: str, env: dict) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", str(ROOT / script), *args], capture_output=True, text=True, env=env, timeout=60)


@pytest.mark.parametrize("flag", ["--help", "-h", "help"])
def test_deploy_help_prints_usage_and_deploys_nothing(recording_tools, flag):
    environment, calls = recording_tools
    done = run("infra/deploy.sh", flag, env=environment)
    assert done.returncode == 0, done.stderr
    assert "usage: infra/deploy.sh deploy" in done.stdout and "MAIL_FROM" in done.stdout
    assert not calls.exists()


@pytest.mark.parametrize("args", [(), ("--dry-run",), ("prod",)])
def test_deploy_without_the_deploy_command_refuses_and_deploys_nothing(recording_tools, args):
    environment, calls = recording_tools
    done = run("infra/deploy.sh", *args, env=environment)
    assert done.returncode == 2
    assert "usage: infra/deploy.sh deploy" in done.stderr
    assert not calls.exists()


def test_deploy_with_the_command_goes_on_to_sam(recording_tools):
    environment, calls = recording_tools
    done = run("infra/deploy.sh", "deploy", env={**environment, "SAM_BUILD_ARGS": ""})
    assert "sam validate --lint" in calls.read_text(), done.stderr


def test_validate_help_changes_nothing_and_stray_arguments_are_refused(recording_tools):
    environment, calls = recording_tools
    helped = run("infra/validate.sh", "--help", env=environment)
    assert helped.returncode == 0 and "usage: infra/validate.sh" in helped.stdout
    refused = run("infra/validate.sh", "deploy", env=environment)
    assert refused.returncode == 2
    assert not calls.exists()
