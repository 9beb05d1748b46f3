"""Concurrency: exact counts under contention, bounded probes, no serialised calls."""

from __future__ import annotations

import asyncio
import sys
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from resilience.config import BreakerOptions
from resilience.core.breaker import BreakerRegistry, BreakerState, CircuitBreaker

THREADS = 8
PER_THREAD = 4000


@pytest.fixture(autouse=True)
def _busy_switching() -> Iterator[None]:
    # Switch threads every 5 µs instead of 5 ms so the threads really interleave.
    old = sys.getswitchinterval()
    sys.setswitchinterval(5e-6)
    yield
    sys.setswitchinterval(old)


def run_threads(n: int, work: Callable[[int], None], timeout: float = 60.0) -> None:
    """Start n threads at once on work(index); fail if any raises or outlives timeout."""
    barrier = threading.Barrier(n)
    errors: list[BaseException] = []

    def body(i: int) -> None:
        try:
            barrier.wait(timeout)
            work(i)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=body, args=(i,), daemon=True) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout)
        assert not t.is_alive(), "a worker thread hung"
    assert not errors, errors


@pytest.mark.parametrize(
    "window",
    [{"window": "count", "window_size": 100_000}, {"window": "time", "window_duration": 60.0}],
)
def test_counts_stay_exact_under_contention(window: dict[str, Any]) -> None:
    # Thresholds of 1.0: a 10% failure share never opens, so every outcome must land.
    b = CircuitBreaker(
        BreakerOptions(failure_rate=1.0, slow_call_rate=1.0, slow_call_duration=1.0, **window)
    )

    def work(_: int) -> None:
        for i in range(PER_THREAD):
            p = b.acquire(5.0)
            assert p is not None
            if i % 10 == 0:
                b.on_failure(p, 5.0, 0.0)
            elif i % 10 == 1:
                b.on_success(p, 5.0, 2.0)  # slow success
            else:
                b.on_success(p, 5.0, 0.0)

    run_threads(THREADS, work)
    snap = b.snapshot(5.0)
    total = THREADS * PER_THREAD
    assert (snap["calls"], snap["failures"], snap["slow_calls"]) == (
        total,
        total // 10,
        total // 10,
    )
    assert snap["state"] == "closed"


def test_a_count_window_stays_consistent_when_it_wraps_under_contention() -> None:
    size = 500
    b = CircuitBreaker(
        BreakerOptions(window_size=size, minimum_calls=size, failure_rate=1.0, slow_call_rate=1.0)
    )

    def work(i: int) -> None:
        for k in range(PER_THREAD):
            p = b.acquire(0.0)
            if i == 0 and k % 2:  # at most half failed: the breaker must stay closed
                b.on_failure(p, 0.0, 0.0)
            else:
                b.on_success(p, 0.0, 0.0)

    run_threads(THREADS, work)
    snap = b.snapshot(0.0)
    assert snap["calls"] == size and 0 <= snap["failures"] <= size
    assert snap["state"] == "closed"


def test_half_open_never_admits_more_than_the_probe_slots() -> None:
    probes = 3
    b = CircuitBreaker(
        BreakerOptions(window_size=2, minimum_calls=2, half_open_probes=probes, jitter=0.0)
    )
    for _ in range(2):
        b.on_failure(b.acquire(0.0), 0.0, 0.0)
    assert b.state(0.0) is BreakerState.OPEN
    admitted: list[object] = []
    heard: list[BreakerState] = []
    b.add_listener(lambda _b, _o, new, _n: heard.append(new))

    def work(_: int) -> None:
        for _ in range(500):
            p = b.acquire(10.0)  # past the open interval: the first caller moves it
            if p is not None:
                admitted.append(p)

    run_threads(THREADS, work)
    assert len(admitted) == probes
    assert heard == [BreakerState.HALF_OPEN]  # one transition, heard once


def test_concurrent_failures_open_the_breaker_exactly_once() -> None:
    b = CircuitBreaker(BreakerOptions(window_size=50, minimum_calls=10, jitter=0.0))
    heard: list[BreakerState] = []
    b.add_listener(lambda _b, _o, new, _n: heard.append(new))

    def work(_: int) -> None:
        for _ in range(200):
            p = b.acquire(0.0)
            if p is not None:
                b.on_failure(p, 0.0, 0.0)

    run_threads(THREADS, work)
    assert heard == [BreakerState.OPEN]


def test_registry_makes_one_breaker_per_key_when_threads_race() -> None:
    reg = BreakerRegistry(BreakerOptions())
    got: list[list[CircuitBreaker]] = [[] for _ in range(THREADS)]

    def work(i: int) -> None:
        for k in range(200):
            got[i].append(reg.get(f"node{k % 20}"))

    run_threads(THREADS, work)
    assert len(reg) == 20
    for k in range(20):
        assert {id(g[k]) for g in got} == {id(reg.get(f"node{k}"))}


def test_guarded_calls_are_not_serialised_by_the_breaker() -> None:
    b = CircuitBreaker(BreakerOptions())

    def work(_: int) -> None:
        p = b.acquire(0.0)
        time.sleep(0.05)  # the guarded call: the breaker holds no lock across it
        b.on_success(p, 0.0, 0.05)

    start = time.monotonic()
    run_threads(THREADS, work)
    # Serialised, 8 calls would take 0.4 s; in parallel about one call's 0.05 s.
    assert time.monotonic() - start < 0.3


async def test_asyncio_tasks_share_a_breaker_with_exact_counts() -> None:
    b = CircuitBreaker(BreakerOptions(window_size=10_000, failure_rate=1.0))

    async def task(i: int) -> None:
        for k in range(50):
            p = b.acquire(1.0)
            await asyncio.sleep(0)  # the guarded await: other tasks run meanwhile
            if (i + k) % 5 == 0:
                b.on_failure(p, 1.0, 0.0)
            else:
                b.on_success(p, 1.0, 0.0)

    await asyncio.wait_for(asyncio.gather(*(task(i) for i in range(40))), timeout=30)
    snap = b.snapshot(1.0)
    assert (snap["calls"], snap["failures"]) == (2000, 400)
