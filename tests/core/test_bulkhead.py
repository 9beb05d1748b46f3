"""Bulkhead: immediate rejects, bounded waits, hand-over to waiters, threads and tasks."""

from __future__ import annotations

import asyncio
import threading
import time

import pytest

from resilience.config import BulkheadOptions
from resilience.core.bulkhead import Bulkhead, make_bulkhead
from resilience.errors import ConfigError


def bulkhead(n: int = 1, wait: float = 0.0) -> Bulkhead:
    return Bulkhead(BulkheadOptions(max_concurrent=n, max_wait=wait))


def test_no_limit_means_no_bulkhead_object() -> None:
    assert make_bulkhead(BulkheadOptions(max_concurrent=0)) is None
    assert make_bulkhead(None) is None


def test_a_bulkhead_object_needs_a_positive_limit() -> None:
    with pytest.raises(ConfigError, match="max_concurrent"):
        Bulkhead(BulkheadOptions(max_concurrent=0))


def test_try_acquire_admits_up_to_the_limit_then_refuses() -> None:
    b = bulkhead(2)
    assert [b.try_acquire() for _ in range(3)] == [True, True, False]
    b.release()
    assert b.try_acquire()
    assert b.in_use == 2


def test_release_without_a_permit_is_an_error() -> None:
    with pytest.raises(RuntimeError, match="without a permit"):
        bulkhead().release()


def test_zero_timeout_rejects_at_once() -> None:
    b = bulkhead()
    assert b.acquire(0.0)
    started = time.monotonic()
    assert not b.acquire(0.0)
    assert time.monotonic() - started < 0.05


def test_a_thread_waits_at_most_its_timeout() -> None:
    b = bulkhead()
    assert b.acquire(0.0)
    started = time.monotonic()
    assert not b.acquire(0.05)
    waited = time.monotonic() - started
    assert 0.04 <= waited < 1.0
    b.release()
    assert b.in_use == 0


def test_a_waiting_thread_gets_the_released_permit() -> None:
    b = bulkhead()
    assert b.acquire(0.0)
    got: list[bool] = []
    waiter = threading.Thread(target=lambda: got.append(b.acquire(5.0)))
    waiter.start()
    deadline = time.monotonic() + 5.0
    while not b._waiters:  # until the waiter is queued (a sleep guessed at it)
        assert time.monotonic() < deadline, "the waiter never queued"
        time.sleep(0.001)
    b.release()  # hands the permit straight to the queued waiter...
    assert not b.try_acquire()  # ...so a newcomer cannot take it before the waiter wakes
    waiter.join(timeout=5)
    assert got == [True] and b.in_use == 1


async def test_a_task_waits_without_blocking_the_loop() -> None:
    b = bulkhead()
    assert b.try_acquire()
    ticks = 0

    async def ticker() -> None:
        nonlocal ticks
        while True:
            ticks += 1
            await asyncio.sleep(0.005)

    tick_task = asyncio.create_task(ticker())
    started = time.monotonic()
    assert not await b.aacquire(0.05)
    tick_task.cancel()
    assert 0.04 <= time.monotonic() - started < 1.0
    assert ticks >= 3


async def test_a_waiting_task_gets_a_permit_released_by_a_thread() -> None:
    b = bulkhead()
    assert b.try_acquire()
    threading.Timer(0.02, b.release).start()
    assert await b.aacquire(5.0)
    assert b.in_use == 1


async def test_a_cancelled_waiter_passes_its_permit_on() -> None:
    b = bulkhead()
    assert b.try_acquire()
    first = asyncio.create_task(b.aacquire(5.0))
    second = asyncio.create_task(b.aacquire(5.0))
    await asyncio.sleep(0.01)
    b.release()  # handed to `first`...
    first.cancel()  # ...which is cancelled before it runs: `second` must get it
    with pytest.raises(asyncio.CancelledError):
        await first
    assert await asyncio.wait_for(second, 5.0)
    assert b.in_use == 1
