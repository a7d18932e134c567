"""`berth up` as a user runs it: `python -m berth_cli up` in a process group of its own (as a shell
starts a command), its output in a file, and the processes it started, read from /proc."""

import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import httpx

REPOSITORY = Path(__file__).parents[2]


@dataclass(frozen=True)
class ProcessInfo:
    pid: int
    parent: int
    state: str  # Z: a zombie, which has exited and waits to be reaped
    started: int  # clock ticks since boot: with the pid, it names one process even if the pid is reused
    command: str


def processes() -> dict[int, ProcessInfo]:
    found = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
            command = Path(f"/proc/{entry}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:  # it exited meanwhile
            continue
        fields = stat[stat.rindex(")") + 2:].split()  # after "pid (comm) "
        found[int(entry)] = ProcessInfo(pid=int(entry), state=fields[0], parent=int(fields[1]), started=int(fields[19]),
                                        command=command.strip())
    return found


def descendants(pid: int) -> list[ProcessInfo]:
    table = processes()
    children: dict[int, list[ProcessInfo]] = {}
    for info in table.values():
        children.setdefault(info.parent, []).append(info)
    found, frontier = [], [pid]
    while frontier:
        for child in children.get(frontier.pop(), []):
            found.append(child)
            frontier.append(child.pid)
    return found


def still_running(known: list[ProcessInfo]) -> list[ProcessInfo]:
    """Those of `known` that have not exited (a zombie has)."""
    table = processes()
    return [info for info in known
            if (now := table.get(info.pid)) is not None and now.started == info.started and now.state != "Z"]


class BerthUp:
    def __init__(self, data_dir: Path, port: int, moto_port: int, *args: str,
                 environment: dict[str, str] | None = None):
        self.api = f"http://127.0.0.1:{port}"
        self.output_path = data_dir.parent / f"{data_dir.name}-berth-up-{time.monotonic_ns()}.log"
        base = {k: v for k, v in os.environ.items() if not k.startswith(("BERTH_", "AWS_"))}
        command = [sys.executable, "-m", "berth_cli", "up", "--port", str(port), "--moto-port", str(moto_port),
                   "--data-dir", str(data_dir), *args]
        with open(self.output_path, "w") as output:
            self.process = subprocess.Popen(command, env={**base, **(environment or {})}, stdout=output,
                                            stderr=subprocess.STDOUT, cwd=REPOSITORY, start_new_session=True)

    @property
    def output(self) -> str:
        return self.output_path.read_text()

    def wait_until_up(self, timeout: float = 120) -> "BerthUp":
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.process.poll() is None, f"berth up exited ({self.process.returncode}):\n{self.output}"
            if "berth is up" in self.output:
                try:
                    if httpx.get(f"{self.api}/health", timeout=2).status_code == 200:
                        return self
                except httpx.HTTPError:
                    pass
            time.sleep(0.2)
        self.kill()
        raise AssertionError(f"berth up did not come up:\n{self.output}")

    def descendants(self) -> list[ProcessInfo]:
        return descendants(self.process.pid)

    def kill(self) -> None:
        """SIGKILL to `berth up` alone, as the OOM killer or a closed terminal's last resort would."""
        self.process.kill()
        self.process.wait()

    def ctrl_c(self, timeout: float = 60) -> float:
        """SIGINT to the whole process group, as Ctrl-C in its terminal; seconds until it exited."""
        started = time.monotonic()
        os.killpg(self.process.pid, signal.SIGINT)
        self.process.wait(timeout=timeout)
        return time.monotonic() - started

    def wait(self, timeout: float = 60) -> int:
        return self.process.wait(timeout=timeout)


def wait_until_gone(known: list[ProcessInfo], timeout: float = 60) -> float:
    """Seconds until none of `known` runs; AssertionError naming those left after `timeout`."""
    started = time.monotonic()
    while (left := still_running(known)) and time.monotonic() - started < timeout:
        time.sleep(0.1)
    assert not left, "left running: " + "; ".join(f"{p.pid} {p.command[:120]}" for p in left)
    return time.monotonic() - started
