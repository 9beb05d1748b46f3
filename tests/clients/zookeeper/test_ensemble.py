"""On a 3-member ensemble: the member the session uses is frozen; calls fail within
their budget and the session moves to another member."""

from __future__ import annotations

import time
from typing import Any

from resilience.errors import ResilienceError

from .test_faults import assert_within_budget, partition, timed, wait_for


def test_frozen_member_session_moves(zookeeper_ensemble: Any, make_zk: Any,
                                     path: str) -> None:
    """Freeze the member serving the session: calls end by the deadline, then the
    session is served by another member (same session, no LOST)."""
    zk = make_zk(zookeeper_ensemble.hosts, session_timeout=3.0, breaker_open_duration=0.05,
                 breaker_max_open_duration=0.05)
    states: list[str] = []
    zk.add_session_listener(lambda old, new: states.append(new))
    zk.ensure_path(path, timeout=5.0)
    session_id = zk.session.session_id
    port = zk.session.kz._connection._socket.getpeername()[1]
    member = next(m for m in zookeeper_ensemble if m.port == port)
    member.freeze()
    try:
        assert_within_budget([timed(lambda: zk.exists(path)) for _ in range(5)])

        def served() -> bool:
            try:
                return zk.exists(path, timeout=0.5) is not None
            except ResilienceError:
                return False

        start = time.monotonic()
        assert wait_for(served, 20.0), states
        moved = time.monotonic() - start
        assert zk.session.kz._connection._socket.getpeername()[1] != port
        assert zk.session.session_id == session_id and "LOST" not in states, (states, moved)
    finally:
        member.thaw()


def test_partitioned_holder_on_ensemble(zookeeper_ensemble: Any, fault_proxy: Any,
                                        make_zk: Any, path: str) -> None:
    """A lock holder cut off from every member: its lease is invalid before a client of
    the same ensemble acquires the lock."""
    import threading


    proxies = [fault_proxy(m.address) for m in zookeeper_ensemble]
    holder = make_zk(",".join(f"{p.host}:{p.port}" for p in proxies), timeout=2.0,
                     session_timeout=2.0, connect_timeout=5.0)
    other = make_zk(zookeeper_ensemble.hosts, timeout=2.0, session_timeout=2.0,
                    connect_timeout=5.0)
    lease = holder.lock(path, timeout=5.0).acquire()
    other.exists("/")
    invalid_at: list[float] = []

    def watch() -> None:
        if wait_for(lambda: not lease.valid, 15.0):
            invalid_at.append(time.monotonic())

    watcher = threading.Thread(target=watch)
    for proxy in proxies:
        partition(proxy)
    watcher.start()
    taken = other.lock(path, timeout=15.0).acquire()
    acquired_at = time.monotonic()
    watcher.join(15)
    assert invalid_at and invalid_at[0] < acquired_at
    taken.release()
