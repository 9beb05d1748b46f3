"""Process faults for any pid or process group: freeze, thaw, kill, restart.

``freeze`` is SIGSTOP: the process stops running but the kernel keeps its sockets, so
connects still complete (into the accept queue) and sent bytes are still ACKed, yet no
reply ever comes: the ``frozen`` fault mode. ``frozen(pid)`` always thaws on exit, even
when the block raises, so a failing test never leaves a server stopped.

Restart needs to know how to start the process again: :class:`ManagedProcess` takes
either argv (a Popen recipe) or a callable returning a ``subprocess.Popen``. The server
harness has its own restart; this is for anything else.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from collections.abc import Callable, Iterator, Sequence
from types import TracebackType
from typing import Any

__all__ = ["ManagedProcess", "freeze", "frozen", "is_stopped", "kill", "thaw"]


def _signal(pid: int, sig: int, group: bool) -> None:
    if pid <= 0:
        raise ValueError(f"pid {pid!r}: expected a positive process id")
    if group:
        os.killpg(pid, sig)
    else:
        os.kill(pid, sig)


def is_stopped(pid: int) -> bool:
    """True if ``pid`` is in the stopped state (``T`` in /proc/<pid>/stat)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] in ("T", "t")
    except (FileNotFoundError, IndexError):
        return False


def _await_state(pid: int, stopped: bool, wait: float) -> None:
    # Signals are delivered asynchronously: wait until the kernel shows the new state,
    # so "freeze() returned" means "the process is stopped".
    deadline = time.monotonic() + wait
    while is_stopped(pid) != stopped:
        if not _exists(pid):
            raise ProcessLookupError(f"process {pid} is gone")
        if time.monotonic() > deadline:
            state = "stopped" if stopped else "running"
            raise TimeoutError(f"process {pid} not {state} {wait} s after the signal")
        time.sleep(0.001)


def freeze(pid: int, *, group: bool = False, wait: float = 2.0) -> None:
    """SIGSTOP ``pid`` (or its process group when ``group``); returns once it is stopped.

    Raises:
        ProcessLookupError: no such process.
        ValueError: ``pid`` is not positive.
        TimeoutError: not stopped within ``wait`` seconds.
    """
    _signal(pid, signal.SIGSTOP, group)
    _await_state(pid, True, wait)


def thaw(pid: int, *, group: bool = False, wait: float = 2.0) -> None:
    """SIGCONT ``pid`` (or its process group); returns once it runs again."""
    _signal(pid, signal.SIGCONT, group)
    _await_state(pid, False, wait)


@contextlib.contextmanager
def frozen(pid: int, *, group: bool = False) -> Iterator[int]:
    """``with frozen(server_pid):`` the process is stopped inside, running again after."""
    freeze(pid, group=group)
    try:
        yield pid
    finally:
        with contextlib.suppress(ProcessLookupError):
            thaw(pid, group=group)


def kill(pid: int, *, sig: int = signal.SIGKILL, group: bool = False,
         wait: float = 5.0) -> bool:
    """Send ``sig`` (SIGKILL by default) and wait up to ``wait`` s for the process to go.

    Returns True if it is gone (or was already). Only children can be reaped; for other
    processes "gone" means the pid no longer exists or is a zombie.
    """
    with contextlib.suppress(ProcessLookupError):
        if sig != signal.SIGKILL:
            # A stopped process cannot act on SIGTERM until it runs again.
            _signal(pid, signal.SIGCONT, group)
        _signal(pid, sig, group)
    deadline = time.monotonic() + wait
    while time.monotonic() < deadline:
        with contextlib.suppress(ChildProcessError):
            if os.waitpid(pid, os.WNOHANG)[0] == pid:
                return True
        if not _exists(pid):
            return True
        time.sleep(0.01)
    return not _exists(pid)


def _exists(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] not in ("Z", "X")
    except (FileNotFoundError, IndexError):
        return False


class ManagedProcess:
    """A process this toolkit may freeze, kill and restart.

    Args:
        recipe: argv to ``subprocess.Popen`` (started in its own process group so a
            kill takes its children too), or a callable returning a started Popen.
        ready: optional check called after each start until it returns True
            (e.g. "the port accepts"), bounded by ``ready_timeout``.
        popen_kwargs: extra ``Popen`` arguments for an argv recipe.

    Raises:
        TimeoutError: ``ready`` did not hold within ``ready_timeout`` after a start.
    """

    def __init__(
        self,
        recipe: Sequence[str] | Callable[[], subprocess.Popen[Any]],
        *,
        ready: Callable[[], bool] | None = None,
        ready_timeout: float = 10.0,
        **popen_kwargs: Any,
    ) -> None:
        if not callable(recipe) and (isinstance(recipe, str) or not recipe):
            raise ValueError(f"recipe {recipe!r}: expected an argv list or a callable")
        self.recipe = recipe
        self.ready = ready
        self.ready_timeout = ready_timeout
        self.popen_kwargs = popen_kwargs
        self.proc: subprocess.Popen[Any] | None = None
        self.starts = 0

    @property
    def pid(self) -> int:
        if self.proc is None:
            raise RuntimeError("process not started")
        return self.proc.pid

    def start(self) -> ManagedProcess:
        if callable(self.recipe):
            self.proc = self.recipe()
        else:
            self.proc = subprocess.Popen(list(self.recipe), start_new_session=True,
                                         **self.popen_kwargs)
        self.starts += 1
        if self.ready is not None:
            try:
                self._await_ready(self.ready, self.proc)
            except BaseException:
                self.kill()  # a start that raises leaves nothing running: no __exit__ runs
                raise
        return self

    def _await_ready(self, ready: Callable[[], bool], proc: subprocess.Popen[Any]) -> None:
        deadline = time.monotonic() + self.ready_timeout
        while not ready():
            if proc.poll() is not None:
                raise RuntimeError(f"{self!r} exited with {proc.returncode} at start")
            if time.monotonic() > deadline:
                raise TimeoutError(f"{self!r} not ready after {self.ready_timeout} s")
            time.sleep(0.02)

    def _group(self) -> bool:
        return not callable(self.recipe)  # argv recipes run in their own session

    def freeze(self) -> None:
        freeze(self.pid, group=self._group())

    def thaw(self) -> None:
        thaw(self.pid, group=self._group())

    def frozen(self) -> contextlib.AbstractContextManager[int]:
        return frozen(self.pid, group=self._group())

    def kill(self, sig: int = signal.SIGKILL, wait: float = 5.0) -> bool:
        """Kill the process (and its group for argv recipes); True once it is gone."""
        if self.proc is None or self.proc.poll() is not None:
            return True
        gone = kill(self.pid, sig=sig, group=self._group(), wait=wait)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(0.1 if gone else wait)
        return gone

    def restart(self, sig: int = signal.SIGKILL) -> ManagedProcess:
        """Kill (``sig``) and start again from the recipe."""
        self.kill(sig)
        return self.start()

    def __enter__(self) -> ManagedProcess:
        return self.start()

    def __exit__(
        self, t: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.kill()

    def __repr__(self) -> str:
        pid = self.proc.pid if self.proc else None
        return f"ManagedProcess(pid={pid}, recipe={self.recipe!r})"
