"""The real local stack (embedded moto server, uvicorn, sweeper, dead-letter consumer) with real
worker processes and a local Hugging Face hub; tests speak HTTP to it."""

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

from app.local.stack import LocalStack, StackOptions, free_port
from tests.support.hub import make_demo_hub
from tests.support.sandbox_fixtures import everything_server  # noqa: F401 (a fixture)

# Small periods so failures show up in seconds: a runtime silent for 2 s is offline, a message
# whose worker died is visible again after 5 s, a message failing 3 times is dead-lettered.
FAST_SETTINGS = {
    "BERTH_HEARTBEAT_INTERVAL_SECONDS": "1",
    "BERTH_JOB_VISIBILITY_SECONDS": "5",
    "BERTH_JOB_MAX_RECEIVES": "3",
    "BERTH_DISPATCH_STALE_SECONDS": "30",
    "BERTH_SSE_WINDOW_SECONDS": "3",
}


@pytest.fixture(scope="module")
def hub():
    with make_demo_hub() as running:
        yield running


@pytest.fixture(scope="module")
def stack(tmp_path_factory, hub):
    options = StackOptions(
        data_dir=tmp_path_factory.mktemp("stack"), port=free_port(), moto_port=free_port(), worker=False,
        sweep_interval=0.5, snapshot_interval=3600, environment=dict(FAST_SETTINGS),
    )
    running = LocalStack(options).start()
    yield running
    running.stop()


@pytest.fixture
def api(stack):
    with httpx.Client(base_url=stack.api_url, timeout=30) as client:
        yield client


@dataclass
class Account:
    client: httpx.Client
    token: str
    workspace_id: str
    headers: dict = field(default_factory=dict)

    def post(self, path, **kwargs):
        return self.client.post(path, headers=self.headers, **kwargs)

    def get(self, path, **kwargs):
        return self.client.get(path, headers=self.headers, **kwargs)

    def delete(self, path, **kwargs):
        return self.client.delete(path, headers=self.headers, **kwargs)

    def join_token(self, uses: int = 1) -> str:
        response = self.post("/v1/cloud/join-tokens", json={"uses": uses})
        assert response.status_code == 201, response.text
        return response.json()["token"]

    def create_job(self, job_type: str = "model.inspect", payload: dict | None = None, *, wait: bool = True,
                   **extra) -> str:
        """A job, accepted with `wait` (by default) even when no registered runtime offers its type:
        most tests create jobs before their worker registers, or of a type no worker runs."""
        response = self.post("/v1/jobs", json={"type": job_type, "payload": payload or {}, "wait": wait, **extra})
        assert response.status_code == 202, response.text
        return response.json()["job_id"]

    def job(self, job_id: str) -> dict:
        return self.get(f"/v1/jobs/{job_id}").json()

    def wait_for_status(self, job_id: str, statuses, timeout: float = 60) -> dict:
        statuses = {statuses} if isinstance(statuses, str) else set(statuses)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            job = self.job(job_id)
            if job["status"] in statuses:
                return job
            time.sleep(0.1)
        raise AssertionError(f"job {job_id} stayed {job['status']}, expected {statuses}")

    def events(self, job_id: str, last_event_id: int | None = None) -> list[dict]:
        """Read the SSE stream to its end, reconnecting with Last-Event-ID after each window."""
        seen: list[dict] = []
        last = last_event_id
        for _ in range(100):
            headers = dict(self.headers)
            if last is not None:
                headers["Last-Event-ID"] = str(last)
            ended = False
            with self.client.stream("GET", f"/v1/jobs/{job_id}/events", headers=headers) as response:
                assert response.status_code == 200, response.read()
                for event in parse_sse(response.iter_lines()):
                    if event["event"] == "end":
                        ended = True
                        break
                    seen.append(event["data"])
                    last = int(event["id"])
            if ended:
                return seen
        raise AssertionError("the event stream never ended")


def parse_sse(lines):
    frame: dict = {}
    for line in lines:
        if not line:
            if "data" in frame:
                frame["data"] = json.loads(frame["data"])
                yield {"event": frame.get("event", "message"), "id": frame.get("id"), "data": frame["data"]}
            frame = {}
            continue
        name, _, value = line.partition(":")
        frame[name] = value.strip()


_emails = iter(range(10_000))


@pytest.fixture
def account(api) -> Account:
    return new_account(api)


def new_account(api) -> Account:
    email = f"user{next(_emails)}-{os.getpid()}-{time.monotonic_ns()}@example.com"
    response = api.post("/v1/auth/signup", json={"name": "Tester", "email": email, "password": "correct-horse"})
    assert response.status_code == 201, response.text
    body = response.json()
    return Account(api, body["token"], body["user"]["workspace_id"], {"Authorization": f"Bearer {body['token']}"})


class WorkerProcess:
    """A real worker subprocess (`python -m workers`) against the stack, its join token in its
    environment (never on a command line). With `direct_control` (the default) it serves its
    control endpoint on loopback and the API calls it there; without, every control request goes
    through its control queue."""

    def __init__(self, stack: LocalStack, hub, data_dir: Path, join_token: str | None, *args: str,
                 direct_control: bool = True):
        self.stack = stack
        self.data_dir = data_dir
        direct = ("--control-listen", "127.0.0.1:0") if direct_control else ()
        command = stack.worker_command(data_dir, "--heartbeat-interval-seconds", "1",
                                       "--visibility-seconds", "5", "--poll-wait-seconds", "1",
                                       "--stop-grace-seconds", "5", *direct, *args)
        environment = {**stack.worker_environment(join_token), **hub.environment()}
        self.log_path = data_dir.with_suffix(".log")
        self.log = open(self.log_path, "w")
        self.process = subprocess.Popen(command, env=environment, stdout=self.log, stderr=subprocess.STDOUT,
                                        start_new_session=True)

    @property
    def runtime_id(self) -> str:
        deadline = time.monotonic() + 30
        path = self.data_dir / "runtime.json"
        while time.monotonic() < deadline:
            if path.exists():
                return json.loads(path.read_text())["runtime_id"]
            assert self.process.poll() is None, self.log_path.read_text()
            time.sleep(0.05)
        raise AssertionError("the worker did not register")

    def signal(self, sig) -> None:
        """`sig` to the worker's process group (as a terminal's Ctrl-C would); sandboxes and engines
        lead sessions of their own, so only the worker itself hears it."""
        os.killpg(self.process.pid, sig)

    def stop(self) -> int:
        if self.process.poll() is None:
            self.signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.signal(signal.SIGKILL)
                self.process.wait()
        self.log.close()
        return self.process.returncode


@pytest.fixture
def workers(stack, hub, tmp_path):
    started: list[WorkerProcess] = []

    def start(join_token: str | None, *args: str, data_dir: Path | None = None,
              direct_control: bool = True) -> WorkerProcess:
        worker = WorkerProcess(stack, hub, data_dir or tmp_path / f"worker{len(started)}", join_token, *args,
                               direct_control=direct_control)
        started.append(worker)
        assert worker.runtime_id  # waits for registration
        return worker

    def clone(worker: WorkerProcess) -> Path:
        """A second data dir holding the same registration: another process of the same runtime."""
        target = tmp_path / f"worker{len(started)}-clone"
        target.mkdir()
        shutil.copy2(worker.data_dir / "runtime.json", target / "runtime.json")
        return target

    start.clone = clone
    yield start
    for worker in started:
        if worker.process.poll() is None:
            try:
                worker.signal(signal.SIGCONT)
            except ProcessLookupError:
                pass
        worker.stop()


REPOSITORY = Path(__file__).parents[2]


class BerthCli:
    """The `berth` command as a user runs it: a process of its own, with a config directory of
    its own. Every run checks that no stored key appears in what the command printed."""

    def __init__(self, config_dir: Path, api_url: str):
        self.config_dir = config_dir
        self.api_url = api_url
        self.environment = {**{k: v for k, v in os.environ.items() if not k.startswith("BERTH_")},
                            "BERTH_CONFIG_DIR": str(config_dir)}

    def command(self, *args: str) -> list[str]:
        return [sys.executable, "-m", "berth_cli", *args]

    def __call__(self, *args: str, stdin: str | None = None, env: dict | None = None,
                 timeout: float = 120) -> subprocess.CompletedProcess:
        done = subprocess.run(self.command(*args), input=stdin, capture_output=True, text=True, timeout=timeout,
                              cwd=REPOSITORY, env={**self.environment, **(env or {})})
        self.assert_no_key_shown(done.stdout + done.stderr, allowed="--show-key" in args,
                                 also=(env or {}).get("BERTH_API_KEY"))
        return done

    def start(self, *args: str) -> subprocess.Popen:
        """A long-running command (`jobs follow`), its output read when it ends."""
        return subprocess.Popen(self.command(*args), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                cwd=REPOSITORY, env=self.environment)

    def profiles(self) -> dict:
        path = self.config_dir / "profiles.json"
        return json.loads(path.read_text())["profiles"] if path.exists() else {}

    def assert_no_key_shown(self, printed: str, allowed: bool = False, also: str | None = None) -> None:
        if not allowed:
            keys = [profile["api_key"] for profile in self.profiles().values()] + ([also] if also else [])
            assert not [key for key in keys if key in printed], "a key was printed"


@pytest.fixture
def berth(stack, tmp_path) -> BerthCli:
    """The CLI with no profile yet."""
    return BerthCli(tmp_path / "berth-config", stack.api_url)


@pytest.fixture
def logged_in(berth, account) -> BerthCli:
    """The CLI with a `default` profile for `account`, made by `berth login` with its password."""
    email = account.get("/v1/auth/me").json()["user"]["email"]
    done = berth("login", "--api", berth.api_url, "--email", email, "--password-stdin", stdin="correct-horse\n")
    assert done.returncode == 0, done.stderr
    return berth
