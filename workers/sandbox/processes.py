"""The processes of a sandbox as seen from /proc: trees, identities, uids, memory."""

import os


def _stat_fields(pid: int) -> list[str] | None:
    """Fields of /proc/PID/stat after the command name (state is [0], ppid [1]), or None."""
    try:
        with open(f"/proc/{pid}/stat") as file:
            return file.read().rsplit(")", 1)[1].split()
    except OSError:
        return None


def running(pid: int) -> bool:
    return identity(pid) is not None


def identity(pid: int) -> tuple[int, str] | None:
    """A running process as (pid, start time): a reused pid is another process."""
    fields = _stat_fields(pid)
    return (pid, fields[19]) if fields is not None and fields[0] != "Z" else None


def identities(pids: list[int]) -> set[tuple[int, str]]:
    return {found for pid in pids if (found := identity(pid))}


def _all_pids() -> list[int]:
    return [int(name) for name in os.listdir("/proc") if name.isdigit()]


def children(parent: int) -> list[int]:
    return [pid for pid in _all_pids() if (fields := _stat_fields(pid)) and int(fields[1]) == parent]


def process_tree(root: int) -> list[int]:
    parents = {pid: int(fields[1]) for pid in _all_pids() if (fields := _stat_fields(pid))}
    tree = [root] if root in parents else []
    for pid in tree:  # grows while iterating: breadth-first
        tree += [child for child, parent in parents.items() if parent == pid]
    return tree


def processes_of_uid(uid: int) -> set[int]:
    pids = set()
    for pid in _all_pids():
        try:
            if os.stat(f"/proc/{pid}").st_uid == uid and running(pid):
                pids.add(pid)
        except FileNotFoundError:
            pass
    return pids


def rss_bytes(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/status") as file:
            for line in file:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0
