"""How a sandboxed MCP server is started: the argv, environment and directory to spawn.

The `mcp` SDK spawns stdio servers itself (`stdio_client` → `anyio.open_process` with
`start_new_session=True`), so there is no preexec hook to apply limits in. Instead the spawned
argv is a chain that sets everything up and then execs the server:

    [enter cgroup] [nsenter --net=<own namespace>] bwrap <namespaces, read-only system, private
    /sandbox> -- python -I -S launch.py SPEC -- cmd…

or, without bubblewrap, just `python -I -S launch.py SPEC -- cmd…` in the work directory.
`launch.py` is this very file (stdlib only, bound read-only into the sandbox): run as a script
it sets the rlimits, drops to the sandbox's uid when it has one, forbids privilege gain and
execs the command with only the sandbox environment. Limits therefore apply to the server and
everything it forks, and the process the SDK holds (bwrap, or the server itself) leads the
process group the SDK kills on shutdown.

Why these choices:
- Memory is RLIMIT_DATA, not RLIMIT_AS: V8 reserves more than a gigabyte of address space up
  front, so an address-space limit of a few hundred MB stops node from starting while saying
  nothing about memory actually used. RLIMIT_DATA counts the private memory a process dirties.
- RLIMIT_NPROC counts processes per real uid and the kernel exempts root, including root
  mapped into a user namespace. A root worker therefore gives every sandbox its own
  unprivileged uid (from SANDBOX_UIDS) and runs bwrap without a user namespace (all the other
  namespaces stay); the launcher switches to that uid before exec. A non-root worker cannot
  switch uids; it uses bwrap's user namespace, where the kernel counts the sandbox's
  processes on their own.
- The sandbox environment travels under ENV_PREFIX and the launcher keeps only those variables
  (in place of bwrap's --clearenv/--setenv), so the values are never on bwrap's command line
  (visible to `ps`) and a variable such as LD_PRELOAD cannot act on bwrap or the launcher,
  which run with the worker's privileges.
- Stopping: bwrap runs the server as the init of a PID namespace, with --die-with-parent, so
  killing the bwrap process the SDK holds takes down everything inside.
- Dying with the worker: bwrap's --die-with-parent, and, for the launcher's own process (the
  server itself without bubblewrap), a parent-death SIGKILL the launcher asks for after it
  switched uid (a uid change clears it); it then checks that the worker it was started by is
  still its parent, as the worker may have died before the request was made.

Inside bubblewrap the server sees /usr (and the /bin, /lib… links), a few files of /etc, this
Python's and node's installation, and private /proc, /dev, /tmp: not the worker's data
directory nor other sandboxes. Its /sandbox (also HOME and the working directory) is a tmpfs of
`policy.disk_mb`, with what the worker put in its work directory bound read-only inside. Its
network namespace is new and empty, or, for a networked sandbox, one of its own with egress
only (network.py). Where cgroups are delegated the spawned argv first enters the sandbox's
cgroup (cgroups.py).

Without bubblewrap ("rlimits" isolation, run only where the runtime's owner accepts it) only the
limits, the clean environment and, for a root worker, the sandbox uid's file permissions apply;
the interpreter and the work directory must then be reachable by that uid.
"""

from __future__ import annotations

import ctypes
import fcntl
import functools
import itertools
import json
import os
import random
import resource
import shutil
import signal
import sys
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from app.contract.messages import IsolationDriver
    from app.contract.policy import SandboxPolicy
    from workers.sandbox.cgroups import SandboxCgroup
    from workers.sandbox.network import SandboxNetwork

SANDBOX_HOME = "/sandbox"
ENV_PREFIX = "BERTH_SANDBOX_ENV_"
LAUNCHER_IN_SANDBOX = "/run/berth/launch.py"
# Unprivileged uids handed to sandboxes by a root worker: above the usual login and
# container sub-uid ranges.
SANDBOX_UIDS = range(1_100_000, 1_165_536)
SYSTEM_PATH = ("/usr/local/bin", "/usr/bin", "/bin")
# What of /etc a server needs: name resolution, TLS roots, the dynamic linker's cache.
ETC_ENTRIES = (
    "resolv.conf", "hosts", "nsswitch.conf", "host.conf", "gai.conf", "localtime",
    "ssl", "ca-certificates", "ca-certificates.conf", "alternatives",
    "ld.so.cache", "ld.so.conf", "ld.so.conf.d",
)
PR_SET_PDEATHSIG = 1
PR_SET_NO_NEW_PRIVS = 38

# A claimed uid is held by an flock on a file named after it, so that workers (or other
# processes using sandboxes) on one host never hand out the same uid at once: stopping a
# sandbox kills every process of its uid. The lock goes with the process that holds it.
UID_LOCK_DIR = "/run/berth-sandbox-uids"
_claimed_uids: dict[int, int] = {}  # uid -> the descriptor holding its lock


@dataclass(frozen=True)
class Launch:
    """A process to spawn: argv, its whole environment, its working directory."""

    argv: list[str]
    env: dict[str, str]
    cwd: str
    isolation: str  # "bubblewrap" or "rlimits"


@functools.cache
def bubblewrap_path() -> str | None:
    return shutil.which("bwrap")


def bubblewrap_available() -> bool:
    return bubblewrap_path() is not None


def isolation_driver(allow_unisolated: bool) -> IsolationDriver:
    """What a runtime reports as its sandbox driver: `bubblewrap`; `rlimits` where it has no
    bubblewrap and its owner accepted unisolated sandboxes; `none` where it runs no sandbox."""
    if bubblewrap_available():
        return "bubblewrap"
    return "rlimits" if allow_unisolated else "none"


def claim_sandbox_uid() -> int | None:
    """An unprivileged uid no live process has, for one sandbox; None when the worker is not
    root (it cannot switch uids, and the user namespace covers it)."""
    if os.geteuid() != 0:
        return None
    os.makedirs(UID_LOCK_DIR, mode=0o700, exist_ok=True)
    busy = set(_claimed_uids) | _uids_of_live_processes()
    # From a random place in the range: a process that claims without the lock (an older worker)
    # is then unlikely to take the same uid in the moment before this sandbox's processes have it.
    start = random.randrange(len(SANDBOX_UIDS))
    for uid in itertools.chain(SANDBOX_UIDS[start:], SANDBOX_UIDS[:start]):
        if uid in busy:
            continue
        lock = os.open(os.path.join(UID_LOCK_DIR, str(uid)), os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:  # another process's sandbox has it
            os.close(lock)
            continue
        _claimed_uids[uid] = lock
        return uid
    raise RuntimeError("every sandbox uid is in use")


def release_sandbox_uid(uid: int | None) -> None:
    lock = _claimed_uids.pop(uid, None) if uid is not None else None
    if lock is not None:
        os.close(lock)


def prepare_workdir(workdir: str, uid: int | None) -> None:
    """Create the work directory, private to the sandbox's uid."""
    os.makedirs(workdir, exist_ok=True)
    os.chmod(workdir, 0o700)
    if uid is None:
        return
    for root, dirs, files in os.walk(workdir):
        for name in [root, *(os.path.join(root, entry) for entry in dirs + files)]:
            os.lchown(name, uid, uid)


def build_launch(
    argv: list[str], env: dict[str, str], workdir: str, policy: SandboxPolicy, uid: int | None,
    readonly_dirs: tuple[str, ...] = (), *, network: SandboxNetwork | None = None,
    cgroup: SandboxCgroup | None = None,
) -> Launch:
    """The process that runs `argv` confined by `policy`: inside bubblewrap when the host has it.

    `readonly_dirs` are host directories the operator provides to every sandbox, read-only at
    the same path (pre-installed MCP servers, say). `network` is the sandbox's own network
    namespace when the policy allows network access (bubblewrap only; without it the sandbox
    gets a namespace with no network at all); `cgroup`, where the host delegates cgroups, holds
    the whole sandbox."""
    bwrap = bubblewrap_path()
    workdir = os.path.abspath(workdir)
    visible_dirs, search_path = _runtime_dirs(argv[0])
    visible_dirs += [os.path.abspath(directory) for directory in readonly_dirs]
    home = SANDBOX_HOME if bwrap else workdir
    sandbox_env = {**env, "PATH": ":".join(search_path), "HOME": home, "LANG": "C.UTF-8"}
    # Without bwrap the process is spawned in the work directory already, by this process; inside
    # bwrap its parent is bwrap's own init, whichever pid that has there.
    spec = json.dumps({"rlimits": _rlimits(policy), "uid": uid, "cwd": SANDBOX_HOME if bwrap else None,
                       "parent": None if bwrap else os.getpid()})
    launcher = LAUNCHER_IN_SANDBOX if bwrap else os.path.abspath(__file__)
    command = [sys.executable, "-I", "-S", launcher, spec, "--", *argv]
    spawn_env = {ENV_PREFIX + name: value for name, value in sandbox_env.items()}
    prefix = cgroup.enter_argv() if cgroup else []
    if bwrap is None:
        return Launch(prefix + command, spawn_env, workdir, "rlimits")
    if network:
        prefix += network.enter_argv()
    mounts = _filesystem_args(workdir, visible_dirs, policy, network.resolv_conf if network else None)
    wrapper = [bwrap, *_namespace_args(uid, own_network=network is not None), *mounts, "--"]
    return Launch(prefix + wrapper + command, spawn_env, workdir, "bubblewrap")


def _rlimits(policy: SandboxPolicy) -> dict[str, int]:
    return {
        "RLIMIT_DATA": policy.memory_mb * 1024 * 1024,
        "RLIMIT_CPU": policy.cpu_seconds,
        "RLIMIT_NPROC": policy.max_processes,
        "RLIMIT_NOFILE": policy.max_open_files,
        "RLIMIT_FSIZE": policy.max_file_mb * 1024 * 1024,
        "RLIMIT_CORE": 0,  # a crashing server must not write its memory to disk
    }


def _namespace_args(uid: int | None, own_network: bool) -> list[str]:
    """Every namespace new. The network namespace is new and empty, unless the sandbox was
    started inside a namespace of its own with egress (`own_network`, see network.py)."""
    common = ["--die-with-parent", "--new-session", "--hostname", "sandbox"]
    if uid is None:
        # Unprivileged worker: a user namespace, with no nested ones inside it. (Networked
        # sandboxes need a root worker, so the network namespace is always new and empty.)
        return [*common, "--unshare-all", "--unshare-user", "--disable-userns"]
    # Root worker: no user namespace (see the module docstring); the launcher only needs to
    # switch uid, so it keeps just that capability until it does.
    network = [] if own_network else ["--unshare-net"]
    return [*common, "--unshare-pid", "--unshare-ipc", "--unshare-uts", "--unshare-cgroup-try", *network,
            "--cap-drop", "ALL", "--cap-add", "CAP_SETUID", "--cap-add", "CAP_SETGID"]


def _filesystem_args(
    workdir: str, runtime_dirs: list[str], policy: SandboxPolicy, resolv_conf: str | None
) -> list[str]:
    mounts = _Mounts()
    # The private /tmp and /dev/shm come first: a later mount would hide anything bound below
    # them (a Python or a tool directory under /tmp). Both are memory, bounded like a process's.
    tmpfs_size = str(policy.memory_mb * 1024 * 1024)
    mounts.args += ["--proc", "/proc", "--dev", "/dev",
                    "--perms", "1777", "--size", tmpfs_size, "--tmpfs", "/tmp",
                    "--perms", "1777", "--size", tmpfs_size, "--tmpfs", "/dev/shm"]
    mounts.made.update({"/proc", "/dev", "/tmp", "/dev/shm"})  # exist already; keep their modes
    mounts.ro_bind("/usr")
    for top in ("/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32"):
        if os.path.islink(top):
            mounts.args += ["--symlink", os.readlink(top), top]
        elif os.path.isdir(top):
            mounts.ro_bind(top)
    for name in ETC_ENTRIES:
        if name == "resolv.conf" and resolv_conf:
            mounts.ro_bind(resolv_conf, "/etc/resolv.conf")  # the namespace's DNS forwarder
        elif os.path.exists(f"/etc/{name}"):
            mounts.ro_bind(f"/etc/{name}")
    for directory in sorted(runtime_dirs):  # a parent before anything inside it
        mounts.ro_bind(directory)
    mounts.ro_bind(os.path.abspath(__file__), LAUNCHER_IN_SANDBOX)
    # /sandbox is memory of a fixed size (a write past it fails with ENOSPC), writable by the
    # sandbox's uid alone in practice (nothing else runs in its namespaces). What the worker put
    # in the work directory before the start (a server's files) is there read-only.
    mounts.args += ["--perms", "1777", "--size", str(policy.disk_mb * 1024 * 1024), "--tmpfs", SANDBOX_HOME]
    for entry in sorted(os.listdir(workdir)):
        mounts.args += ["--ro-bind", os.path.join(workdir, entry), f"{SANDBOX_HOME}/{entry}"]
    return mounts.args


class _Mounts:
    """bwrap mount arguments. bwrap would create missing parents of a mount point as 0700;
    they are made 0755 first, so a sandbox uid can reach e.g. an interpreter under /root."""

    def __init__(self) -> None:
        self.args: list[str] = []
        self.bound: list[str] = []
        self.made: set[str] = set()

    def ro_bind(self, source: str, target: str | None = None) -> None:
        target = target or source
        if self._covered(target):
            return
        parent = os.path.dirname(target)
        parents: list[str] = []
        while parent != "/" and parent not in self.made and not self._covered(parent):
            parents.insert(0, parent)
            parent = os.path.dirname(parent)
        for directory in parents:
            self.args += ["--perms", "0755", "--dir", directory]
        self.made.update(parents)
        self.bound.append(target)
        self.args += ["--ro-bind", source, target]

    def _covered(self, path: str) -> bool:
        return any(path == bound or path.startswith(bound + "/") for bound in self.bound)


def _runtime_dirs(executable: str) -> tuple[list[str], list[str]]:
    """What a server needs to see, and its PATH: this Python's prefixes (Python servers and
    the launcher run on it), node's, and the directory of the command's executable when
    neither provides it."""
    prefixes = [sys.prefix, sys.base_prefix]
    node = shutil.which("node")
    if node:
        prefixes.append(os.path.dirname(os.path.dirname(os.path.realpath(node))))
    search_path = _unique([*(f"{prefix}/bin" for prefix in prefixes if f"{prefix}/bin" not in SYSTEM_PATH),
                           *SYSTEM_PATH])
    found = shutil.which(executable)
    if shutil.which(executable, path=":".join(search_path)) is None and found:
        command_dir = os.path.dirname(os.path.realpath(found))
        prefixes.append(command_dir)
        search_path.append(command_dir)
    return _unique(prefixes), search_path


def _unique(items) -> list[str]:
    return list(dict.fromkeys(items))


def _uids_of_live_processes() -> set[int]:
    uids = set()
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            try:
                uids.add(entry.stat().st_uid)
            except FileNotFoundError:
                pass  # exited while we looked
    return uids


def _launch(spec: dict, command: list[str]) -> None:
    """Inside the sandbox: apply limits and identity, then become the server."""
    parent = spec.get("parent") or os.getppid()
    env = {name[len(ENV_PREFIX):]: value for name, value in os.environ.items() if name.startswith(ENV_PREFIX)}
    for name, limit in spec["rlimits"].items():
        resource.setrlimit(getattr(resource, name), (limit, limit))
    uid = spec["uid"]
    if uid is not None:
        os.setgroups([])
        os.setresgid(uid, uid, uid)
        os.setresuid(uid, uid, uid)
    libc = ctypes.CDLL(None, use_errno=True)
    # Only now: changing uid clears a parent-death signal. Exec keeps it (NO_NEW_PRIVS below
    # rules out the set-uid exec that would clear it too).
    if libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_PDEATHSIG) failed")
    if os.getppid() != parent:  # the worker died before the signal was asked for: nobody would send it
        print("sandbox: the worker that started this sandbox is gone", file=sys.stderr)
        os._exit(1)
    if spec["cwd"]:
        os.chdir(spec["cwd"])  # only now: the work directory is private to the sandbox uid
    # Python ignores these; exec would pass that on to the server.
    signal.signal(signal.SIGPIPE, signal.SIG_DFL)
    signal.signal(signal.SIGXFSZ, signal.SIG_DFL)
    # No setuid binary may give the server back what it just lost.
    if libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_NO_NEW_PRIVS) failed")
    try:
        os.execvpe(command[0], command, env)
    except OSError as exc:
        print(f"sandbox: cannot run {command[0]!r}: {exc}", file=sys.stderr)
        sys.exit(127)


if __name__ == "__main__":
    _launch(json.loads(sys.argv[1]), sys.argv[3:])
