"""Recipes against a real ZooKeeper: the lock's bound, clean-up and lease, IDs, watches."""

from __future__ import annotations

import multiprocessing
import threading
import time
from typing import Any

import pytest

from resilience.clients.zookeeper import LeaseLostError, LockTimeout, WorkerLostError, ZooKeeper

from .conftest import FAST
from .test_faults import partition, wait_for


def test_lock_timeouts_are_bounded_and_leave_no_contender(zookeeper: Any, make_zk: Any,
                                                          path: str) -> None:
    """Hundreds of timed-out acquires: each within its bound, no node left behind."""
    holder = make_zk(zookeeper.address, timeout=2.0)
    # The lock's budget bounds its requests too: one cut short counts against the
    # breaker, so this client judges over a wider window than FAST's 4 calls.
    other = make_zk(zookeeper.address, timeout=2.0, breaker_minimum_calls=20,
                    breaker_window_size=20)
    other.exists("/")
    with holder.lock(path, timeout=2.0, identifier="holder") as lease:
        assert lease.valid
        walls = []
        for _ in range(200):
            start = time.monotonic()
            with pytest.raises(LockTimeout):
                other.lock(path, timeout=0.05).acquire()
            walls.append(time.monotonic() - start)
        assert max(walls) < 0.05 + 0.25
        assert wait_for(lambda: other.get_children(path) == [lease.node.rsplit("/", 1)[1]],
                        5.0), other.get_children(path)
    assert not lease.valid
    assert holder.get_children(path) == []


def test_lock_is_exclusive_and_handed_over(zookeeper: Any, make_zk: Any, path: str) -> None:
    """Two threads on two clients never hold the lock at once; the waiter gets it."""
    clients = [make_zk(zookeeper.address, timeout=2.0) for _ in range(2)]
    inside, overlaps = [0], [0]

    def work(zk: ZooKeeper) -> None:
        for _ in range(5):
            with zk.lock(path, timeout=5.0) as lease:
                inside[0] += 1
                overlaps[0] += inside[0] > 1
                lease.check()
                time.sleep(0.01)
                inside[0] -= 1

    threads = [threading.Thread(target=work, args=(zk,)) for zk in clients]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert overlaps[0] == 0


def test_partitioned_holder_loses_lease_before_another_acquires(
        zookeeper: Any, fault_proxy: Any, make_zk: Any, path: str) -> None:
    """The holder's lease turns invalid (and check() raises) before the other client
    can take the lock: SUSPENDED at 2/3 of the session timeout, expiry at all of it."""
    proxy = fault_proxy(zookeeper.address)
    holder = make_zk(f"{proxy.host}:{proxy.port}", timeout=2.0, session_timeout=2.0)
    other = make_zk(zookeeper.address, timeout=2.0, session_timeout=2.0)
    lease = holder.lock(path, timeout=2.0).acquire()
    other.exists("/")
    partition(proxy)
    start = time.monotonic()
    invalid_at: list[float] = []
    def watch() -> None:
        if wait_for(lambda: not lease.valid, 10.0):
            invalid_at.append(time.monotonic())

    watcher = threading.Thread(target=watch)
    watcher.start()
    taken = other.lock(path, timeout=10.0).acquire()
    acquired_at = time.monotonic()
    watcher.join(10)
    assert invalid_at and invalid_at[0] < acquired_at, (invalid_at, acquired_at - start)
    with pytest.raises(LeaseLostError):
        lease.check()
    assert taken.valid
    taken.release()


def test_election_leader_first(zookeeper: Any, make_zk: Any, path: str) -> None:
    """The first contender leads; the second waits, bounded, and leads after it."""
    a, b = (make_zk(zookeeper.address, timeout=2.0) for _ in range(2))
    lead = a.election(path, "a").lead(timeout=2.0)
    with pytest.raises(LockTimeout):
        b.election(path, "b").lead(timeout=0.2)
    assert a.election(path).contenders() == ["a"]
    lead.release()
    assert b.election(path, "b").lead(timeout=2.0).valid


def _ids_in_child(hosts: str, path: str, count: int, out: Any) -> None:
    zk = ZooKeeper(hosts, **FAST)
    gen = zk.id_generator(path, claim_timeout=5.0)
    gen.claim()
    out.put((gen.worker, [gen.next_id() for _ in range(count)]))
    zk.close()


def test_ids_unique_across_processes(zookeeper: Any, path: str) -> None:
    """Several processes claim distinct workers and never issue the same ID."""
    ctx = multiprocessing.get_context("fork")
    out = ctx.Queue()
    procs = [ctx.Process(target=_ids_in_child, args=(zookeeper.address, path, 20000, out))
             for _ in range(3)]
    for p in procs:
        p.start()
    results = [out.get(timeout=30) for _ in procs]
    for p in procs:
        p.join(10)
    workers = {w for w, _ in results}
    ids = [i for _, chunk in results for i in chunk]
    assert len(workers) == 3 and len(set(ids)) == len(ids) == 60000
    assert all(chunk == sorted(chunk) for _, chunk in results)


def test_ids_fast_and_reclaimed_after_session_loss(zookeeper: Any, fault_proxy: Any,
                                                   make_zk: Any, path: str) -> None:
    """An ID costs microseconds and no I/O; a partition stops IDs at once (no two live
    workers with one number) and they resume, unique, after the session is back."""
    proxy = fault_proxy(zookeeper.address)
    zk = make_zk(f"{proxy.host}:{proxy.port}", timeout=2.0, session_timeout=1.0)
    gen = zk.id_generator(path)
    gen.claim()
    before = proxy.counters().upstream_bytes
    start = time.perf_counter()
    first = [gen.next_id() for _ in range(20000)]
    per_id = (time.perf_counter() - start) / 20000
    assert per_id < 20e-6, per_id
    partition(proxy)
    assert wait_for(lambda: zk.state != "CONNECTED", 5.0)
    with pytest.raises(WorkerLostError):
        gen.next_id()
    time.sleep(1.5)  # the server expires the session: the number is free for others
    proxy.clear()
    assert wait_for(lambda: zk.state == "CONNECTED", 10.0)
    after = [gen.next_id() for _ in range(1000)]
    assert len(set(first + after)) == 21000 and after[0] > first[-1]
    assert proxy.counters().upstream_bytes > before  # (the re-claim went to the server)


def test_watches_survive_session_loss(zookeeper: Any, fault_proxy: Any, make_zk: Any,
                                      path: str) -> None:
    """Data and children watches see changes made after their session was lost."""
    proxy = fault_proxy(zookeeper.address)
    zk = make_zk(f"{proxy.host}:{proxy.port}", timeout=2.0, session_timeout=1.0)
    writer = make_zk(zookeeper.address, timeout=2.0)
    writer.ensure_path(path)
    data: list[Any] = []
    kids: list[Any] = []
    zk.watch_data(f"{path}/d", lambda d, stat: data.append(d))
    zk.watch_children(path, kids.append)
    writer.create(f"{path}/d", b"1")
    assert wait_for(lambda: data[-1:] == [b"1"] and kids[-1:] == [["d"]], 5.0), (data, kids)
    partition(proxy)
    assert wait_for(lambda: zk.state != "CONNECTED", 5.0)
    time.sleep(1.5)
    writer.set(f"{path}/d", b"2")
    writer.create(f"{path}/e")
    proxy.clear()
    assert wait_for(lambda: data[-1:] == [b"2"] and kids[-1:] == [["d", "e"]], 10.0), \
        (data, kids)
    writer.set(f"{path}/d", b"3")
    assert wait_for(lambda: data[-1:] == [b"3"], 5.0), data


def test_read_write_lock_and_semaphore(zookeeper: Any, make_zk: Any, path: str) -> None:
    """Readers share, a writer excludes them; a semaphore admits max_leases holders."""
    a, b = (make_zk(zookeeper.address, timeout=2.0) for _ in range(2))
    r1 = a.rw_lock(f"{path}/rw").read(timeout=2.0).acquire()
    r2 = b.rw_lock(f"{path}/rw").read(timeout=2.0).acquire()
    with pytest.raises(LockTimeout):
        b.rw_lock(f"{path}/rw").write(timeout=0.2).acquire()
    r1.release()
    r2.release()
    w = b.rw_lock(f"{path}/rw").write(timeout=2.0).acquire()
    with pytest.raises(LockTimeout):
        a.rw_lock(f"{path}/rw").read(timeout=0.2).acquire()
    w.release()
    s1 = a.semaphore(f"{path}/sem", 2, timeout=2.0).acquire()
    s2 = b.semaphore(f"{path}/sem", 2, timeout=2.0).acquire()
    with pytest.raises(LockTimeout):
        a.semaphore(f"{path}/sem", 2, timeout=0.2).acquire()
    waiter: list[Any] = []
    thread = threading.Thread(target=lambda: waiter.append(
        b.semaphore(f"{path}/sem", 2, timeout=5.0).acquire()))
    thread.start()
    time.sleep(0.2)
    s1.release()
    thread.join(5)
    assert waiter and waiter[0].valid and s2.valid
    assert wait_for(lambda: len(a.get_children(f"{path}/sem")) == 2, 5.0)
