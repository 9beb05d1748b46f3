"""The asyncio memcached wrapper against real memcached: operations, deadlines under
faults without blocking the loop, breaker per node, aclose waking calls.

The fault modes, error rules and rejections shared with the sync wrapper run on both
in test_faults.py, test_errors.py, test_rejections.py and test_fan_out.py."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

from resilience.clients.memcache import AsyncMemcache
from resilience.core.breaker import BreakerState
from resilience.errors import (
    BackendTimeoutError,
    BackendUnavailableError,
    CircuitOpenError,
    ResilienceError,
)

from .conftest import BUDGET, FAST, assert_within_budget

MakeAsync = Callable[..., AsyncMemcache]


@pytest.fixture
async def make_async() -> AsyncIterator[MakeAsync]:
    made: list[AsyncMemcache] = []

    def make(servers: list[str], **options: Any) -> AsyncMemcache:
        cache = AsyncMemcache(servers, **{**FAST, **options})
        made.append(cache)
        return cache

    yield make
    for cache in made:
        await cache.aclose()


async def test_every_operation_round_trips(memcached: Any, make_async: MakeAsync) -> None:
    cache = make_async([memcached.address])
    assert await cache.set("k", b"v", timeout=2.0) is True
    assert await cache.get("k") == b"v"
    assert await cache.get("absent", b"d") == b"d"
    assert await cache.add("k", b"x") is False and await cache.add("n", "1") is True
    assert await cache.replace("k", b"v2") is True and await cache.replace("no", b"x") is False
    value, token = await cache.gets("k")
    assert value == b"v2" and token is not None
    assert await cache.cas("k", b"v3", token) is True
    assert await cache.cas("k", b"v4", token) is False
    assert await cache.cas("never", b"v", 1) is None
    assert await cache.incr("n", 4) == 5 and await cache.decr("n", 2) == 3
    assert await cache.incr("none") is None
    assert await cache.touch("k", 50) is True and await cache.touch("no") is False
    assert await cache.get_many(["k", "n", "zz"]) == {"k": b"v3", "n": b"3"}
    assert await cache.delete("k") is True and await cache.delete("k") is False


async def test_a_value_arriving_in_many_reads_is_read_whole(memcached: Any,
                                                             make_async: MakeAsync) -> None:
    cache = make_async([memcached.address], timeout=2.0)
    big = bytes(range(256)) * 2000  # 512 KB: many socket reads, CRLF bytes inside
    assert await cache.set_many({"big": big, "small": b"s"}) == []
    assert await cache.get("big") == big
    assert await cache.get_many(["small", "big", "absent"]) == {"small": b"s", "big": big}


async def test_illegal_key_raises_value_error_before_any_io(make_async: MakeAsync) -> None:
    cache = make_async(["127.0.0.1:1"])
    for bad in ("with space", "x" * 251, ""):
        with pytest.raises(ValueError):
            await cache.get(bad)
    assert cache._driver.peek() is None  # nothing was even built


async def test_frozen_node_call_ends_at_its_deadline_without_blocking_the_loop(
        memcached: Any, make_async: MakeAsync) -> None:
    cache = make_async([memcached.address])
    await cache.set("k", b"v", timeout=2.0)
    ticks = 0

    async def ticker() -> None:
        nonlocal ticks
        while True:
            await asyncio.sleep(0.005)
            ticks += 1

    task = asyncio.create_task(ticker())
    memcached.freeze()
    try:
        outcomes = []
        for _ in range(6):
            start = time.monotonic()
            with pytest.raises((BackendTimeoutError, CircuitOpenError)) as info:
                await cache.get("k")
            outcomes.append((time.monotonic() - start, info.value))
        assert_within_budget(outcomes)
        assert cache.breaker(memcached.address).state(time.monotonic()) is BreakerState.OPEN
        assert ticks >= 20  # the loop kept running while calls waited on the frozen node
    finally:
        memcached.thaw()
        task.cancel()
    await asyncio.sleep(0.3)
    assert await cache.get("k", timeout=1.0) == b"v"
    assert cache.breaker(memcached.address).state(time.monotonic()) is BreakerState.CLOSED


async def test_each_call_on_a_reused_connection_is_cut_at_its_own_deadline(
        memcached: Any, make_async: MakeAsync) -> None:
    """One deadline timer per connection (``_aio.Conn.arm``): a short call after a long
    one is cut at its own deadline, a long call after a short one is not cut at the
    short one's."""
    cache = make_async([memcached.address], pool_size=1, retry_attempts=1,
                       breaker_enabled=False)
    assert await cache.set_many({"k": b"v", "k2": b"w"}, timeout=2.0) == []
    assert await cache.get("k", timeout=3.0) == b"v"  # the timer: 3 s from now
    memcached.freeze()
    try:
        start = time.monotonic()
        with pytest.raises(BackendTimeoutError):
            await cache.get("k", timeout=0.1)
        assert time.monotonic() - start < 0.1 + 0.5  # not at the 3 s of the call before
    finally:
        memcached.thaw()
    # A new connection (the timed-out one, whose reply to "k" is now due, is never
    # reused), its timer at 0.3 s.
    assert await cache.get("k2", timeout=0.3) == b"w"
    memcached.freeze()
    try:
        start = time.monotonic()
        with pytest.raises(BackendTimeoutError):
            await cache.get("k", timeout=1.5)
        assert 1.0 < time.monotonic() - start < 1.5 + 0.5  # not at the 0.3 s before
    finally:
        memcached.thaw()
    assert await cache.get("k", timeout=2.0) == b"v"


async def test_fail_open_reads_return_misses(memcached: Any, make_async: MakeAsync) -> None:
    cache = make_async([memcached.address], fail_open=True)
    await cache.set("k", b"v", timeout=2.0)
    memcached.freeze()
    try:
        assert await cache.get("k", b"fallback") == b"fallback"
        assert await cache.gets("k") == (None, None)
        assert await cache.get_many(["k"]) == {}
    finally:
        memcached.thaw()


async def test_aclose_wakes_a_call_in_flight(memcached: Any, make_async: MakeAsync) -> None:
    cache = make_async([memcached.address], timeout=5.0)
    await cache.get("warm")
    memcached.freeze()
    try:
        call = asyncio.create_task(cache.get("k"))
        await asyncio.sleep(0.1)
        start = time.monotonic()
        await cache.aclose()
        with pytest.raises(BackendUnavailableError):
            await asyncio.wait_for(call, 1.0)
        assert time.monotonic() - start < 0.5
        with pytest.raises(BackendUnavailableError, match="closed"):
            await cache.get("k")
    finally:
        memcached.thaw()


async def test_one_frozen_node_of_three_leaves_the_others_serving(
        memcached_cluster: Any, make_async: MakeAsync) -> None:
    cache = make_async(memcached_cluster.addresses, retry_attempts=1)
    keys = [f"key:{i}" for i in range(30)]
    for k in keys:
        await cache.set(k, b"v", timeout=2.0)
    frozen = memcached_cluster.members[0]
    good = [k for k in keys if cache.node_for(k) != frozen.address]
    frozen.freeze()
    try:
        start = time.monotonic()
        with pytest.raises(ResilienceError) as info:
            await cache.get_many(keys)
        assert time.monotonic() - start < 2 * BUDGET  # nodes asked concurrently
        assert set(info.value.partial) == set(good)
        for k in good:
            assert await cache.get(k) == b"v"
        with pytest.raises(ResilienceError) as info:
            await cache.set_many({k: b"w" for k in keys})
        assert info.value.partial == []  # the others stored all
        assert set(info.value.failed_keys) == set(keys) - set(good)
    finally:
        frozen.thaw()


async def test_no_task_or_connection_leaks_over_200_faulted_calls(
        memcached: Any, make_async: MakeAsync) -> None:
    from .conftest import open_fds

    cache = make_async([memcached.address], timeout=0.01, breaker_enabled=False,
                       retry_attempts=1)
    await cache.get("warm", timeout=2.0)
    tasks, fds = len(asyncio.all_tasks()), open_fds()
    memcached.freeze()
    try:
        for _ in range(200):
            with pytest.raises(ResilienceError):
                await cache.get("k")
    finally:
        memcached.thaw()
    await asyncio.sleep(0.05)  # aborted transports finish closing on the next loop turns
    assert len(asyncio.all_tasks()) <= tasks
    assert open_fds() <= fds + 1


async def test_multi_key_writes_span_the_nodes(memcached_cluster: Any,
                                               make_async: MakeAsync) -> None:
    cache = make_async(memcached_cluster.addresses)
    values: dict[str | bytes, str | bytes] = {f"key:{i}": f"v{i}" for i in range(30)}
    assert await cache.set_many(values, timeout=2.0) == []
    assert len({cache.node_for(k) for k in values}) == 3
    found = await cache.get_many(list(values), timeout=2.0)
    assert found == {k: str(v).encode() for k, v in values.items()}
    assert await cache.delete_many(list(values)[:10], timeout=2.0) is True
    assert len(await cache.get_many(list(values), timeout=2.0)) == 20
