"""The sync multi-key calls ask their nodes concurrently: N hanging nodes cost one
budget, each node gets the whole budget, N slow nodes cost about one round trip; the
fan-out threads start on first use and stop with close()."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from typing import Any

import pytest

from resilience.clients.memcache import Memcache
from resilience.clients.memcache._fanout import FanOut
from resilience.core.deadline import current_deadline, deadline
from resilience.errors import BackendTimeoutError
from resilience.faults import toxics

KEYS = [f"key:{i}" for i in range(30)]
BUDGET = 0.1


def _fanout_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith("resilience-memcache-fanout")]


def test_three_frozen_nodes_fail_within_one_budget_each_given_the_whole_budget(
        memcached_cluster: Any, make_cache: Callable[..., Memcache]) -> None:
    cache = make_cache(memcached_cluster.addresses, retry_attempts=1)
    cache.set_many({k: b"v" for k in KEYS}, timeout=2.0)  # warm connections to every node
    for member in memcached_cluster.members:
        member.freeze()
    try:
        start = time.monotonic()
        with pytest.raises(BackendTimeoutError) as info:
            cache.get_many(KEYS, timeout=BUDGET)
        took = time.monotonic() - start
    finally:
        for member in memcached_cluster.members:
            member.thaw()
    assert took < 2 * BUDGET
    # Asked in turn, each node would get a third of the budget (its error after ~33 ms).
    assert info.value.elapsed is not None and info.value.elapsed > 0.6 * BUDGET
    assert set(info.value.failed_keys) == set(KEYS)
    assert info.value.partial == {}


def test_slow_nodes_are_asked_concurrently(memcached_cluster: Any, fault_proxy: Any,
                                           make_cache: Callable[..., Memcache]) -> None:
    proxies = [fault_proxy(member.address) for member in memcached_cluster.members]
    cache = make_cache([f"{p.host}:{p.port}" for p in proxies], timeout=2.0)
    assert cache.set_many({k: b"v" for k in KEYS}) == []
    for proxy in proxies:
        proxy.add(toxics.Latency(latency_ms=50))
    took = []
    for _ in range(3):
        start = time.monotonic()
        assert cache.get_many(KEYS) == {k: b"v" for k in KEYS}
        took.append(time.monotonic() - start)
    assert min(took) < 0.125, took  # one after another: >= 150 ms


def test_threads_start_on_first_use_and_stop_with_close(
        memcached_cluster: Any, make_cache: Callable[..., Memcache]) -> None:
    before = set(_fanout_threads())
    cache = make_cache(memcached_cluster.addresses)
    cache.get("one-node")
    cache.get_many(["one-node"])
    assert set(_fanout_threads()) == before  # construction and one-node calls start none
    cache.get_many(KEYS)
    assert set(_fanout_threads()) - before
    cache.close()
    end = time.monotonic() + 5.0
    while set(_fanout_threads()) - before and time.monotonic() < end:
        time.sleep(0.01)
    assert not set(_fanout_threads()) - before


def _sleepers(n: int, seconds: float) -> list[Callable[[], Any]]:
    def task() -> tuple[str, float | None]:
        time.sleep(seconds)
        return threading.current_thread().name, current_deadline()
    return [task] * n


def test_fanout_runs_slow_tasks_concurrently_with_the_callers_deadline() -> None:
    fanout = FanOut(3)
    try:
        with deadline(5.0) as dl:
            start = time.monotonic()
            outcomes = fanout.run([*_sleepers(3, 0.05), lambda: 1 / 0])
            took = time.monotonic() - start
        assert took < 0.125, took  # in turn: 150 ms
        assert len({name for name, _ in outcomes[:3]}) == 3  # three threads
        assert all(at == dl.at for _, at in outcomes[:3])  # helpers had the deadline
        assert isinstance(outcomes[3], ZeroDivisionError)  # an outcome, in its place
    finally:
        fanout.close()


def test_fanout_after_close_runs_every_task_in_the_caller() -> None:
    fanout = FanOut(3)
    fanout.close()
    me = threading.current_thread().name
    assert [name for name, _ in fanout.run(_sleepers(3, 0.0))] == [me] * 3


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_a_fork_child_starts_its_own_threads() -> None:
    fanout = FanOut(3)
    try:
        fanout.run(_sleepers(3, 0.01))  # the parent's threads exist now
        read, write = os.pipe()
        pid = os.fork()
        if pid == 0:  # the child: the parent's threads are gone; it must start its own
            ok = 0
            try:
                start = time.monotonic()
                names = {name for name, _ in fanout.run(_sleepers(3, 0.05))}
                ok = int(len(names) == 3 and time.monotonic() - start < 0.125)
            finally:
                os.write(write, b"%d" % ok)
                os._exit(0)
        os.close(write)
        with os.fdopen(read, "rb") as pipe:
            answer = pipe.read()
        os.waitpid(pid, 0)
        assert answer == b"1"
    finally:
        fanout.close()
