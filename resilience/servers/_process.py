"""Process-group helpers: signal, stop, wait until stopped, memory and start time from /proc.

Each server runs in its own session and process group (``start_new_session=True``), so
one ``killpg`` reaches every process it forked. Processes are looked up in ``/proc``.
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Callable
from pathlib import Path

__all__ = [
    "process_start_time",
    "read_rss_bytes",
    "signal_group",
    "stop_group",
    "wait_group_gone",
    "wait_group_stopped",
]


def read_rss_bytes(pid: int) -> int | None:
    """Resident memory of ``pid`` (VmRSS from /proc), or None if the process is gone."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        return None
    return None


def process_start_time(pid: int) -> int | None:
    """The kernel start time of ``pid`` (field 22 of /proc/PID/stat) to detect pid reuse."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        # the command name (field 2) may hold spaces and parentheses: split after the last ')'
        return int(stat.rsplit(")", 1)[1].split()[19])
    except (OSError, ValueError, IndexError):
        return None


def _group_pids(pgid: int) -> list[int]:
    """Processes of group ``pgid`` that are not finished zombies (scans /proc)."""
    pids = []
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            fields = Path(entry.path, "stat").read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        in_group = len(fields) > 2 and fields[2] == str(pgid)
        if in_group and (fields[0] != "Z" or _threads_exiting(entry.path)):
            pids.append(int(entry.name))
    return pids


def _threads_exiting(proc_dir: str) -> bool:
    """A zombie leader whose other threads are still exiting: a SIGKILLed JVM shows Z at
    once, but its file table (the listening sockets a restart needs) is released only
    when the last thread is gone. Measured: a restart then hit "port already in use"."""
    try:
        return len(os.listdir(os.path.join(proc_dir, "task"))) > 1
    except OSError:
        return False


def wait_group_stopped(pgid: int, timeout: float = 2.0) -> bool:
    """Wait until every thread of every process in group ``pgid`` is stopped (state T).

    ``kill(SIGSTOP)`` returns before a thread busy on another CPU has stopped: without
    this wait a request sent right after ``freeze()`` may still be served.
    """
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if all(_threads_stopped(pid) for pid in _group_pids(pgid)):
            return True
        time.sleep(0.002)
    return False


def _threads_stopped(pid: int) -> bool:
    try:
        tasks = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return True  # gone
    for tid in tasks:
        try:
            stat = Path(f"/proc/{pid}/task/{tid}/stat").read_text()
        except OSError:
            continue
        if stat.rsplit(")", 1)[1].split()[0] not in ("T", "t", "Z", "X"):
            return False
    return True


def _group_alive(pgid: int) -> bool:
    """True while a process of group ``pgid`` exists that is not a zombie.

    Finished zombies count as gone: a child re-parented to init waits for init to reap
    it, which in a container may take a second or more, and it holds nothing (no port, no
    file). A zombie leader whose threads are still exiting does not (see
    :func:`_threads_exiting`).
    """
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return bool(_group_pids(pgid))


def signal_group(pgid: int, sig: int) -> bool:
    """Send ``sig`` to process group ``pgid``; False when the group is already gone."""
    try:
        os.killpg(pgid, sig)
    except ProcessLookupError:
        return False
    return True


def wait_group_gone(
    pgid: int, timeout: float, reap: Callable[[], object] | None = None
) -> bool:
    """Wait up to ``timeout`` s until no process of group ``pgid`` is left (zombies aside).

    ``reap`` is called while waiting (``Popen.poll`` for our own child) so a zombie
    leader does not keep the group "alive". False when some process is still there.
    """
    end = time.monotonic() + timeout
    while True:
        if reap is not None:
            reap()
        if not _group_alive(pgid):
            return True
        if time.monotonic() >= end:
            return False
        time.sleep(0.02)


def stop_group(pgid: int, timeout: float, reap: Callable[[], object] | None = None) -> None:
    """SIGCONT + SIGTERM the group, wait up to ``timeout`` s, then SIGKILL and wait 5 s more.

    ``reap`` is as in :func:`wait_group_gone`.
    """
    # A frozen process cannot act on SIGTERM: wake it first.
    signal_group(pgid, signal.SIGCONT)
    if not signal_group(pgid, signal.SIGTERM):
        return
    if not wait_group_gone(pgid, timeout, reap):
        signal_group(pgid, signal.SIGKILL)
        wait_group_gone(pgid, 5.0, reap)
