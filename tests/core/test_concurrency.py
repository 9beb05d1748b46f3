"""Concurrency with real time: no serialisation, exact counts, bounded bulkhead waits."""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time

import pytest

from resilience.config import BreakerOptions, BulkheadOptions
from resilience.core.breaker import CircuitBreaker
from resilience.core.bulkhead import Bulkhead
from resilience.core.deadline import deadline
from resilience.core.pipeline import Operation, call
from resilience.core.policy import Policy
from resilience.errors import BulkheadFullError

CALL = 0.05  # seconds one guarded call takes


def test_eight_threads_run_their_calls_in_parallel() -> None:
    policy = Policy("db", timeout=1.0)
    barrier = threading.Barrier(8)
    began: list[float] = []
    done: list[float] = []

    def worker() -> None:
        barrier.wait(timeout=5)  # all threads exist: thread start-up is not measured
        began.append(time.monotonic())
        policy.call(time.sleep, CALL)
        done.append(time.monotonic())

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=5)
    assert len(done) == 8
    assert max(done) - min(began) < 4 * CALL  # one call's time, not eight


async def test_eight_tasks_run_their_calls_concurrently() -> None:
    policy = Policy("db", timeout=1.0)
    started = time.monotonic()
    await asyncio.gather(*(policy.acall(asyncio.sleep, CALL) for _ in range(8)))
    assert time.monotonic() - started < 4 * CALL


def test_counts_stay_exact_under_thread_contention() -> None:
    breaker = BreakerOptions(window="count", window_size=10_000, minimum_calls=10_000)
    policy = Policy("db", breaker=breaker, bulkhead=BulkheadOptions(max_concurrent=3, max_wait=5))
    events: list[str] = []
    policy.events.add_listener(lambda e: events.append(e.kind))
    lock = threading.Lock()
    in_flight = peak = 0

    def guarded(i: int) -> None:
        nonlocal in_flight, peak
        with lock:
            in_flight += 1
            peak = max(peak, in_flight)
        time.sleep(0)  # let other threads interleave
        with lock:
            in_flight -= 1
        if i % 4 == 0:
            raise ConnectionError("boom")

    def worker() -> None:
        for i in range(200):  # 50 of them fail
            with contextlib.suppress(ConnectionError):
                policy.call(guarded, i)

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    snap = policy.breaker.snapshot(time.monotonic())
    assert (snap["calls"], snap["failures"]) == (1600, 400)
    assert events.count("failure") == 400 and "rejected" not in events
    assert peak <= 3


async def test_counts_stay_exact_across_tasks() -> None:
    breaker = BreakerOptions(window="count", window_size=1000, minimum_calls=1000)
    policy = Policy("db", breaker=breaker, bulkhead=BulkheadOptions(max_concurrent=2, max_wait=5))

    async def guarded(i: int) -> int:
        await asyncio.sleep(0)
        if i % 5 == 0:
            raise ConnectionError("boom")
        return i

    results = await asyncio.gather(
        *(policy.acall(guarded, i) for i in range(500)), return_exceptions=True
    )
    assert sum(isinstance(r, ConnectionError) for r in results) == 100
    snap = policy.breaker.snapshot(time.monotonic())
    assert (snap["calls"], snap["failures"]) == (500, 100)


def test_a_bulkhead_wait_ends_at_the_deadline() -> None:
    policy = Policy("db", bulkhead=BulkheadOptions(max_concurrent=1, max_wait=30.0))
    holding = threading.Event()
    release = threading.Event()

    def hold() -> None:
        holding.set()
        release.wait(timeout=5)

    holder = threading.Thread(target=policy.call, args=(hold,))
    holder.start()
    assert holding.wait(timeout=5)
    started = time.monotonic()
    try:
        with deadline(0.05), pytest.raises(BulkheadFullError):
            policy.call(lambda: None)
        assert time.monotonic() - started < 1.0  # not max_wait's 30 s
    finally:
        release.set()
        holder.join(timeout=5)


async def test_an_async_bulkhead_wait_ends_at_the_deadline() -> None:
    bulkhead = BulkheadOptions(max_concurrent=1, max_wait=30.0)
    policy = Policy("db", timeout=0.05, bulkhead=bulkhead, cancel_at_deadline=False)
    release = asyncio.Event()
    holder = asyncio.create_task(policy.acall(asyncio.wait_for, release.wait(), 5))
    await asyncio.sleep(0.01)
    started = time.monotonic()
    with pytest.raises(BulkheadFullError):
        await policy.acall(asyncio.sleep, 0)
    assert time.monotonic() - started < 1.0
    release.set()
    await asyncio.wait_for(holder, 5)


def test_time_spent_waiting_for_a_permit_comes_out_of_the_budget() -> None:
    bulkhead = Bulkhead(BulkheadOptions(max_concurrent=1, max_wait=1.0))
    op = Operation("get", service="db", timeout=1.0, bulkhead=bulkhead)
    breaker = CircuitBreaker(BreakerOptions(), name="db-1")
    assert bulkhead.try_acquire()
    threading.Timer(0.1, bulkhead.release).start()
    budget = call(op, breaker, lambda remaining: remaining)
    assert budget <= 0.95
