"""Every example in README.md runs as written on a fresh local stack.

The fenced `sh` blocks are read from the README and run, one shell command at a time, with bash,
against `berth up --fresh` started as a user starts it (its own worker included), in a home
directory of its own. What the test changes, and nothing else:
- the address: the README's stack listens on 127.0.0.1:7500, this one on a free port;
- the variables the README says to set from an answer (`→ ...: TOKEN=token`): set from that answer;
- a person's typing: `berth login` gets the email and password of the README's signup on stdin,
  `berth logout` the password;
- `berth worker` runs until the end of the test (a worker does not exit): it must register;
- `berth admin` works with AWS credentials, not the API: it gets the local stack's (its moto);
- Hugging Face is the tests' local hub (HF_ENDPOINT), holding the README's model.
The first block (`make run`, `make test`) is how the stack is started and this suite is run.
"""

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from app.local.stack import free_port
from tests.e2e.conftest import REPOSITORY
from tests.support.hub import demo_llama_files, make_demo_hub

README = REPOSITORY / "README.md"
README_ADDRESS = re.compile(r"(localhost|127\.0\.0\.1):7500")
SETS = re.compile(r"# → .*: ([A-Z]+)=([a-z_]+)\s*$", re.M)
HEREDOC = re.compile(r"<<'(\w+)'")


def shell_commands(block: str) -> list[str]:
    """The block's commands: continued lines joined, a heredoc kept with its command."""
    commands, current, heredoc_end = [], [], None
    for line in block.splitlines():
        current.append(line)
        if heredoc_end is not None:
            if line.strip() == heredoc_end:
                heredoc_end = None
        elif (started := HEREDOC.search(line)) is not None:
            heredoc_end = started.group(1)
        if heredoc_end is None and not line.rstrip().endswith("\\"):
            if any(part.strip() for part in current):
                commands.append("\n".join(current))
            current = []
    return commands


def readme_blocks() -> list[str]:
    return re.findall(r"```sh\n(.*?)```", README.read_text(), re.S)


def test_the_readme_examples_are_found_where_the_test_expects_them():
    blocks = readme_blocks()
    assert shell_commands(blocks[0]) == ["make run    # install into .venv and start the local stack on "
                                         "http://127.0.0.1:7500 (docs at /api-docs)",
                                         "make test   # install what the tests need (bubblewrap too, where it can) "
                                         "and run the whole suite"]
    commands = [command for block in blocks[1:] for command in shell_commands(block)]
    assert {match[0] for command in commands for match in SETS.findall(command)} == {"TOKEN", "KEY", "JOB", "SID",
                                                                                     "JOIN"}


@pytest.fixture(scope="module")
def readme_hub():
    with make_demo_hub() as hub:
        hub.add_model("openai-community/gpt2", demo_llama_files(), license="mit", pipeline_tag="text-generation",
                      library_name="transformers")
        yield hub


class FreshStack:
    """`berth up --fresh` in a home of its own, with a `berth` on the PATH that runs this checkout."""

    def __init__(self, home: Path, hub):
        self.home = home
        self.port, self.moto_port = free_port(), free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        shims = home / "bin"
        shims.mkdir(parents=True)
        berth = shims / "berth"
        berth.write_text(f'#!/bin/sh\nexec "{sys.executable}" -m berth_cli "$@"\n')
        berth.chmod(0o755)
        self.environment = {
            **{name: value for name, value in os.environ.items() if not name.startswith(("BERTH_", "AWS_"))},
            **hub.environment(), "HOME": str(home), "PATH": f"{shims}:{os.environ['PATH']}",
            "PYTHONPATH": str(REPOSITORY), "BERTH_API_URL": self.url,
        }
        self.process = subprocess.Popen(
            ["berth", "up", "--fresh", "--port", str(self.port), "--moto-port", str(self.moto_port)],
            env={k: v for k, v in self.environment.items() if k != "BERTH_API_URL"}, cwd=home,
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
        self.background: list[subprocess.Popen] = []

    def wait_until_ready(self) -> None:
        """Up, and its own worker registered (a fresh stack offers every job type once it has)."""
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            assert self.process.poll() is None, "berth up exited"
            try:
                ready = httpx.get(f"{self.url}/v1/ready", timeout=2).json()
                if ready.get("ready") and not any("no runtime is online" in w for w in ready["warnings"]):
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.3)
        raise AssertionError("the fresh stack did not come up with its worker")

    def aws_environment(self) -> dict[str, str]:
        """What `berth admin` needs on the local stack: its AWS (moto) endpoint and any credentials."""
        return {"AWS_ENDPOINT_URL": f"http://127.0.0.1:{self.moto_port}", "AWS_ACCESS_KEY_ID": "berth-local",
                "AWS_SECRET_ACCESS_KEY": "berth-local", "AWS_REGION": "us-east-1", "AWS_DEFAULT_REGION": "us-east-1"}

    def run(self, command: str, variables: dict[str, str], stdin: str | None = None) -> subprocess.CompletedProcess:
        aws = self.aws_environment() if command.startswith("berth admin") else {}
        return subprocess.run(["bash", "-c", README_ADDRESS.sub(f"127.0.0.1:{self.port}", command)],
                              env={**self.environment, **aws, **variables}, input=stdin, capture_output=True,
                              text=True, timeout=180, cwd=self.home)

    def start(self, command: str, variables: dict[str, str]) -> subprocess.Popen:
        process = subprocess.Popen(["bash", "-c", README_ADDRESS.sub(f"127.0.0.1:{self.port}", command)],
                                   env={**self.environment, **variables}, stdout=subprocess.DEVNULL,
                                   stderr=subprocess.DEVNULL, cwd=self.home, start_new_session=True)
        self.background.append(process)
        return process

    def stop(self) -> None:
        for process in [*self.background, self.process]:
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGINT if process is self.process else signal.SIGTERM)
                try:
                    process.wait(timeout=60)
                except subprocess.TimeoutExpired:
                    os.killpg(process.pid, signal.SIGKILL)
                    process.wait()


@pytest.fixture
def fresh_stack(tmp_path, readme_hub):
    stack = FreshStack(tmp_path / "home", readme_hub)
    try:
        stack.wait_until_ready()
        yield stack
    finally:
        stack.stop()


def _answer(done: subprocess.CompletedProcess) -> dict | None:
    text = done.stdout.strip()
    return json.loads(text) if text.startswith("{") else None


def _wait_for_worker(stack: FreshStack, token: str, worker: subprocess.Popen) -> None:
    """`berth worker` never exits: it succeeds by registering and staying online."""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        assert worker.poll() is None, "the README's worker exited"
        runtimes = httpx.get(f"{stack.url}/v1/cloud/runtimes", headers={"Authorization": f"Bearer {token}"}).json()
        if any(not r["shared"] and r["status"] == "online" for r in runtimes["runtimes"]):
            return
        time.sleep(0.3)
    raise AssertionError("the README's worker did not register")


def test_every_readme_example_runs_as_written_on_a_fresh_stack(fresh_stack):
    variables: dict[str, str] = {}
    commands = [command for block in readme_blocks()[1:] for command in shell_commands(block)]
    signup = json.loads(re.search(r"-d '(\{\"name\".*?\})'", commands[0]).group(1))
    for command in commands:
        if command.startswith("BERTH_WORKER_JOIN_TOKEN=$JOIN berth worker"):
            _wait_for_worker(fresh_stack, variables["TOKEN"], fresh_stack.start(command, variables))
            continue
        typed = {"berth login": f"{signup['email']}\n{signup['password']}\n",
                 "berth logout": f"{signup['password']}\n"}
        stdin = next((text for start, text in typed.items() if command.startswith(start)), None)
        done = fresh_stack.run(command, variables, stdin)
        assert done.returncode == 0, f"{command}\n→ exit {done.returncode}\n{done.stdout}\n{done.stderr}"
        answer = _answer(done)
        assert answer is None or answer.get("success") is not False, f"{command}\n→ {done.stdout}"
        for name, field in SETS.findall(command):
            assert answer is not None and field in answer, f"{command}\n→ no {field} in {done.stdout}"
            variables[name] = answer[field]
        if "/events" in command:
            assert '"status": "complete"' in done.stdout, f"the job did not complete:\n{done.stdout}"
        if "tools/call" in command or command.startswith("berth sandboxes call"):
            assert (answer or {}).get("ok", True) is True and "hi" in done.stdout, done.stdout
