"""Process faults on a real child server: freeze, thaw, kill, restart."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from collections.abc import Iterator

import pytest

from resilience.faults.process import ManagedProcess, freeze, frozen, is_stopped, kill, thaw

from ._echo import ECHO_SCRIPT


def free_port() -> int:
    with socket.create_server(("127.0.0.1", 0)) as s:
        port: int = s.getsockname()[1]
    return port


def accepts(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
        return True
    except OSError:
        return False


@pytest.fixture
def server() -> Iterator[tuple[ManagedProcess, int]]:
    port = free_port()
    with ManagedProcess([sys.executable, "-c", ECHO_SCRIPT, "127.0.0.1", str(port)],
                        ready=lambda: accepts(port)) as proc:
        yield proc, port


def test_frozen_server_accepts_connects_but_never_replies(
    server: tuple[ManagedProcess, int],
) -> None:
    proc, port = server
    with proc.frozen():
        assert is_stopped(proc.pid)
        s = socket.create_connection(("127.0.0.1", port), timeout=0.3)  # kernel accepts
        s.sendall(b"hi")
        with pytest.raises(TimeoutError):
            s.recv(2)
    s.settimeout(2)
    assert s.recv(2) == b"hi"  # thawed: the queued request is answered
    assert not is_stopped(proc.pid)
    s.close()


def test_frozen_thaws_even_when_the_block_raises(server: tuple[ManagedProcess, int]) -> None:
    proc, _ = server
    with pytest.raises(RuntimeError), proc.frozen():
        raise RuntimeError("test failed inside")
    assert not is_stopped(proc.pid)


def test_freeze_and_thaw_a_plain_pid() -> None:
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        freeze(child.pid)
        assert is_stopped(child.pid)
        thaw(child.pid)
        assert not is_stopped(child.pid)
        with frozen(child.pid):
            assert is_stopped(child.pid)
        assert not is_stopped(child.pid)
    finally:
        assert kill(child.pid)
        child.wait(5)


def test_kill_makes_connects_refused_and_restart_serves_again(
    server: tuple[ManagedProcess, int],
) -> None:
    proc, port = server
    first = proc.pid
    assert proc.kill()
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", port), timeout=1)
    proc.start()
    assert proc.pid != first and proc.starts == 2
    with socket.create_connection(("127.0.0.1", port), timeout=1) as s:
        s.sendall(b"up")
        assert s.recv(2) == b"up"


def test_restart_from_a_callable_recipe() -> None:
    def spawn() -> subprocess.Popen[bytes]:
        return subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])

    with ManagedProcess(spawn) as proc:
        first = proc.pid
        proc.restart()
        assert proc.pid != first
    assert proc.proc is not None and proc.proc.poll() is not None


def test_kill_of_a_frozen_process_with_sigterm_still_ends_it() -> None:
    import signal

    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    freeze(child.pid)
    t0 = time.monotonic()
    assert kill(child.pid, sig=signal.SIGTERM, wait=5)
    assert time.monotonic() - t0 < 5
    child.wait(1)


def test_a_start_that_never_gets_ready_leaves_no_process_behind() -> None:
    proc = ManagedProcess([sys.executable, "-c", "import time; time.sleep(30)"],
                          ready=lambda: False, ready_timeout=0.1)
    with pytest.raises(TimeoutError, match="not ready"), proc:
        pass
    assert proc.proc is not None and proc.proc.poll() is not None


def test_bad_pid_and_recipe_are_rejected() -> None:
    with pytest.raises(ValueError, match="pid"):
        freeze(0)
    with pytest.raises(ValueError, match="recipe"):
        ManagedProcess("python -c pass")
