"""Faults against a real ZooKeeper: every call ends by its deadline, calls made while the
session is not CONNECTED are refused at once with nothing queued, a timed-out write says
it is ambiguous, close wakes a blocked call, and a forked child gets its own session."""

from __future__ import annotations

import os
import socket
import statistics
import threading
import time
from collections.abc import Sequence
from typing import Any

import pytest

from resilience.errors import (
    BackendTimeoutError,
    BackendUnavailableError,
    CircuitOpenError,
)
from resilience.faults import toxics

from .._budget import timed as timed
from .conftest import BUDGET, MARGIN, SMALL, MakeClient


def assert_within_budget(outcomes: Sequence[tuple[float, BaseException | None]]) -> None:
    assert all(wall < BUDGET + MARGIN for wall, _ in outcomes), outcomes
    failed = [w for w, e in outcomes if isinstance(e, (BackendTimeoutError,
                                                       BackendUnavailableError))]
    assert failed, outcomes
    assert statistics.median(failed) < BUDGET + SMALL, failed


def partition(proxy: Any) -> None:
    """Swallow every byte both ways: to each side the other is silent (a partition)."""
    proxy.add(toxics.Blackhole(direction="downstream"))
    proxy.add(toxics.Blackhole(direction="upstream"))


def wait_for(predicate: Any, timeout: float) -> bool:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if predicate():
            return True
        time.sleep(0.01)
    return False


def test_frozen_server_calls_end_by_the_deadline(fresh_server: Any, make_client: MakeClient,
                                                 path: str) -> None:
    """SIGSTOP: each call ends at its budget (kazoo's sync call would wait forever), then
    the breaker opens and calls are refused in microseconds."""
    server = fresh_server("zookeeper")
    zk = make_client(server.address, session_timeout=10.0)
    zk.ensure_path(path, timeout=2.0)
    server.freeze()
    outcomes = [timed(lambda: zk.get(path)) for _ in range(6)]
    assert_within_budget(outcomes)
    assert all(isinstance(e, (BackendTimeoutError, CircuitOpenError)) for _, e in outcomes)
    wall, err = timed(lambda: zk.get(path))
    assert isinstance(err, CircuitOpenError) and wall < 0.01


def test_refused_first_call_fails_in_budget(make_client: MakeClient) -> None:
    """Nothing listens: the lazy start fails as soon as every member refused, without
    waiting out the budget (kazoo's start(timeout) would take 10 s or more), and later
    calls are refused at once."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    zk = make_client(f"127.0.0.1:{port}")
    wall, err = timed(lambda: zk.get("/x"))
    assert isinstance(err, BackendUnavailableError) and wall < BUDGET, (wall, err)
    assert "every member" in str(err)
    outcomes = [timed(lambda: zk.get("/x")) for _ in range(5)]
    assert all(isinstance(e, (BackendUnavailableError, CircuitOpenError))
               for _, e in outcomes)
    assert statistics.median(w for w, _ in outcomes) < 0.01


def test_latency_above_budget(zookeeper: Any, fault_proxy: Any, make_client: MakeClient,
                              path: str) -> None:
    """Replies 3x the budget late: every call ends at its budget."""
    proxy = fault_proxy(zookeeper.address)
    zk = make_client(f"{proxy.host}:{proxy.port}", session_timeout=10.0)
    zk.exists("/", timeout=2.0)
    with proxy.toxic(toxics.Latency(latency_ms=300)):
        assert_within_budget([timed(lambda: zk.exists(path)) for _ in range(5)])


def test_suspended_session_refuses_at_once_and_queues_nothing(
        zookeeper: Any, fault_proxy: Any, make_zk: Any, path: str) -> None:
    """While SUSPENDED a call is refused in microseconds and kazoo's request queue stays
    empty; raw kazoo queues the same request (and would send it after the reconnect)."""
    proxy = fault_proxy(zookeeper.address)
    zk = make_zk(f"{proxy.host}:{proxy.port}", session_timeout=1.0)
    states: list[str] = []
    zk.add_session_listener(lambda old, new: states.append(new))
    zk.ensure_path(path, timeout=2.0)
    partition(proxy)
    assert wait_for(lambda: zk.state == "SUSPENDED", 5.0)
    kz = zk.session.kz
    walls = []
    for _ in range(50):
        start = time.perf_counter()
        with pytest.raises((CircuitOpenError, BackendUnavailableError)):
            zk.create(f"{path}/n", b"")
        walls.append(time.perf_counter() - start)
    assert statistics.median(walls) < 0.001, walls
    assert len(kz._queue) == 0
    kz.get_async(path)  # the raw driver: queued while SUSPENDED
    assert len(kz._queue) == 1
    assert wait_for(lambda: "LOST" in states, 5.0), states  # declared by the client
    assert wait_for(lambda: zk.breaker(zk.endpoints[0]).state(time.monotonic()).name
                    == "FORCED_OPEN", 1.0)
    proxy.clear()
    assert wait_for(lambda: zk.state == "CONNECTED", 10.0)
    assert zk.get_children(path, timeout=2.0) == []  # the queued create never ran


def test_timed_out_write_is_ambiguous(fresh_server: Any, make_zk: Any, path: str) -> None:
    """A create whose reply never came says so, and is in fact applied after the thaw."""
    server = fresh_server("zookeeper")
    zk = make_zk(server.address, session_timeout=10.0, retry_attempts=1)
    zk.ensure_path(path, timeout=2.0)
    server.freeze()
    with pytest.raises(BackendTimeoutError, match="ambiguous") as info:
        zk.create(f"{path}/late", b"x")
    assert info.value.__cause__ is not None
    server.thaw()
    assert wait_for(lambda: zk.exists(f"{path}/late", timeout=1.0) is not None, 10.0)


def test_close_wakes_a_blocked_call(fresh_server: Any, make_zk: Any, path: str) -> None:
    """A call waiting on a frozen server ends as soon as the client is closed."""
    server = fresh_server("zookeeper")
    zk = make_zk(server.address, session_timeout=10.0)
    zk.exists("/", timeout=2.0)
    server.freeze()
    out: list[tuple[float, BaseException | None]] = []
    worker = threading.Thread(target=lambda: out.append(
        timed(lambda: zk.get(path, timeout=5.0))))
    worker.start()
    time.sleep(0.2)
    zk.close()
    worker.join(2.0)
    assert out and isinstance(out[0][1], BackendUnavailableError) and out[0][0] < 1.5


def test_no_thread_leak_after_many_faulted_calls(fresh_server: Any, make_zk: Any,
                                                 path: str) -> None:
    """Hundreds of timed-out calls park no thread."""
    server = fresh_server("zookeeper")
    zk = make_zk(server.address, session_timeout=10.0, breaker_enabled=False,
                 timeout=0.005)
    zk.exists("/", timeout=2.0)
    before = threading.active_count()
    server.freeze()
    for _ in range(200):
        timed(lambda: zk.get(path))
    assert threading.active_count() <= before + 1


def test_fork_child_gets_its_own_session(zookeeper: Any, make_zk: Any, path: str) -> None:
    """A child process after fork makes calls on a new session of its own."""
    zk = make_zk(zookeeper.address, timeout=2.0)
    zk.ensure_path(path)
    parent_session = zk.session.session_id
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        code = 1
        try:
            zk.create(f"{path}/child", b"")
            code = 0 if zk.session.session_id != parent_session else 2
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert zk.exists(f"{path}/child") is not None
    assert zk.session.session_id == parent_session
