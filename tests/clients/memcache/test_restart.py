"""A node restarted on the same port is served again at once: pooled connections to
the dead process are dropped on the first failure, and an idempotent attempt that met
one tries once more on a fresh connection, so neither the first call nor the breaker's
half-open probe fails on a healthy node. A node that is really down is still reported
down, with at most one fresh connection per attempt."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

from resilience.clients.memcache import AsyncMemcache, Memcache
from resilience.core.breaker import BreakerRegistry, BreakerState
from resilience.errors import BackendUnavailableError
from resilience.faults import toxics

from .conftest import FAST

WARM = 4  # idle pooled connections before the restart


def _warm(cache: Memcache, depth: int = WARM) -> None:
    """Leave ``depth`` idle connections in the pool: each level holds its connection
    while the next level opens another."""
    def hold(client: Any) -> Any:
        _warm(cache, depth - 1)
        return client.get("k")

    if depth:
        cache.run("get", "k", hold)


def _idle(cache: Memcache) -> int:
    nodes = cache._driver.peek()
    assert nodes is not None
    return nodes[0].idle_count


def _restart(server: Any) -> None:
    server.kill()
    server.start(10.0)


def test_the_first_call_after_a_restart_succeeds(
        memcached: Any, make_cache: Callable[..., Memcache]) -> None:
    cache = make_cache([memcached.address], retry_attempts=1)
    _warm(cache)
    assert _idle(cache) == WARM
    _restart(memcached)
    assert cache.set("k", b"v") is True  # on a fresh connection, within the attempt
    assert _idle(cache) == 1  # the other pooled connections were dropped, not tried
    assert cache.get("k") == b"v"
    assert cache.breaker(memcached.address).state(time.monotonic()) is BreakerState.CLOSED


def test_a_non_idempotent_call_is_not_repeated_but_clears_the_pool(
        memcached: Any, make_cache: Callable[..., Memcache]) -> None:
    cache = make_cache([memcached.address], retry_attempts=1)
    _warm(cache)
    _restart(memcached)
    with pytest.raises(BackendUnavailableError):
        cache.incr("n")  # may have reached a server that died: never sent twice
    assert _idle(cache) == 0
    assert cache.incr("n") is None  # the next call connects afresh


def _shared_breaker(memcached: Any, make: Callable[..., Any]) -> tuple[Any, Any]:
    """Two clients of one node sharing its breaker: one with warm pooled connections,
    one with none (it opens the breaker while the node is down)."""
    registry = BreakerRegistry(make([memcached.address]).options.breaker)
    return (make([memcached.address], retry_attempts=1, breakers=registry),
            make([memcached.address], retry_attempts=1, breakers=registry))


def test_the_first_half_open_probe_after_a_restart_closes_the_breaker(
        memcached: Any, make_cache: Callable[..., Memcache]) -> None:
    warm, cold = _shared_breaker(memcached, make_cache)
    _warm(warm)
    memcached.kill()
    breaker = warm.breaker(memcached.address)
    for _ in range(8):  # refused connects until the breaker opens
        if breaker.state(time.monotonic()) is BreakerState.OPEN:
            break
        with pytest.raises(BackendUnavailableError):
            cold.get("k")
    assert breaker.state(time.monotonic()) is BreakerState.OPEN
    memcached.start(10.0)
    time.sleep(FAST["breaker_open_duration"] + 0.1)
    assert warm.get("k") is None  # the probe, through a stale pooled connection first
    assert breaker.state(time.monotonic()) is BreakerState.CLOSED


def test_a_node_really_down_is_reported_down_with_one_fresh_try_per_attempt(
        memcached: Any, fault_proxy: Any, make_cache: Callable[..., Memcache]) -> None:
    proxy = fault_proxy(memcached.address)
    cache = make_cache([f"{proxy.host}:{proxy.port}"], retry_attempts=1)
    _warm(cache)
    proxy.close_connections()  # every pooled connection is dead
    proxy.add(toxics.Reset(after_bytes=1, direction="upstream"))  # and so is every new one
    accepted = proxy.counters().accepted
    start = time.monotonic()
    with pytest.raises(BackendUnavailableError):
        cache.get("k")
    assert time.monotonic() - start < FAST["timeout"]
    assert proxy.counters().accepted - accepted == 1
    assert _idle(cache) == 0


@pytest.fixture
async def make_async() -> AsyncIterator[Callable[..., AsyncMemcache]]:
    made: list[AsyncMemcache] = []

    def make(servers: list[str], **options: Any) -> AsyncMemcache:
        made.append(cache := AsyncMemcache(servers, **{**FAST, **options}))
        return cache

    yield make
    for cache in made:
        await cache.aclose()


async def _awarm(cache: AsyncMemcache) -> None:
    await asyncio.gather(*(cache.get("k") for _ in range(WARM)))  # WARM connections at once


def _aidle(cache: AsyncMemcache) -> int:
    pools = cache._driver.peek()
    assert pools is not None
    return pools[0].idle_count


async def test_async_the_first_call_after_a_restart_succeeds(
        memcached: Any, make_async: Callable[..., AsyncMemcache]) -> None:
    cache = make_async([memcached.address], retry_attempts=1)
    await _awarm(cache)
    assert _aidle(cache) == WARM
    _restart(memcached)
    assert await cache.set("k", b"v") is True
    assert _aidle(cache) == 1
    assert await cache.get("k") == b"v"


async def test_async_the_first_half_open_probe_after_a_restart_closes_the_breaker(
        memcached: Any, make_async: Callable[..., AsyncMemcache]) -> None:
    warm, cold = _shared_breaker(memcached, make_async)
    await _awarm(warm)
    memcached.kill()
    breaker = warm.breaker(memcached.address)
    for _ in range(8):
        if breaker.state(time.monotonic()) is BreakerState.OPEN:
            break
        with pytest.raises(BackendUnavailableError):
            await cold.get("k")
    assert breaker.state(time.monotonic()) is BreakerState.OPEN
    memcached.start(10.0)
    await asyncio.sleep(FAST["breaker_open_duration"] + 0.1)
    assert await warm.get("k") is None
    assert breaker.state(time.monotonic()) is BreakerState.CLOSED


async def test_async_a_node_really_down_is_reported_down_with_one_fresh_try(
        memcached: Any, fault_proxy: Any, make_async: Callable[..., AsyncMemcache]) -> None:
    proxy = fault_proxy(memcached.address)
    cache = make_async([f"{proxy.host}:{proxy.port}"], retry_attempts=1)
    await _awarm(cache)
    await asyncio.to_thread(proxy.close_connections)
    await asyncio.to_thread(proxy.add, toxics.Reset(after_bytes=1, direction="upstream"))
    accepted = proxy.counters().accepted
    with pytest.raises(BackendUnavailableError):
        await cache.get("k")
    assert proxy.counters().accepted - accepted == 1
    assert _aidle(cache) == 0
