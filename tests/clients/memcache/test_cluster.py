"""Three memcached nodes: one failing node is ejected by its own breaker, the others
serve at normal speed, and traffic returns to the node once it is healthy."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from functools import partial
from typing import Any

import pytest

from resilience.clients.memcache import Memcache
from resilience.core.breaker import BreakerState
from resilience.errors import CircuitOpenError, ResilienceError

from .conftest import assert_within_budget, timed

KEYS = [f"key:{i}" for i in range(60)]


def _by_node(cache: Memcache) -> dict[str, list[str]]:
    groups: dict[str, list[str]] = {}
    for key in KEYS:
        groups.setdefault(cache.node_for(key), []).append(key)
    return groups


def _latency(fn: Callable[[], Any], n: int = 30) -> float:
    times = []
    for _ in range(n):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def test_keys_are_spread_over_all_three_nodes(memcached_cluster: Any,
                                              make_cache: Callable[..., Memcache]) -> None:
    cache = make_cache(memcached_cluster.addresses)
    assert set(_by_node(cache)) == set(memcached_cluster.addresses)
    cache.set_many({k: k.encode() for k in KEYS})
    assert cache.get_many(KEYS) == {k: k.encode() for k in KEYS}


def test_one_frozen_node_is_ejected_while_the_others_serve_at_normal_speed(
        memcached_cluster: Any, make_cache: Callable[..., Memcache]) -> None:
    cache = make_cache(memcached_cluster.addresses)
    cache.set_many({k: b"v" for k in KEYS}, timeout=2.0)
    groups = _by_node(cache)
    frozen = memcached_cluster.members[0]
    bad_keys = groups[frozen.address]
    good_keys = [k for a, ks in groups.items() if a != frozen.address for k in ks]
    healthy = _latency(lambda: cache.get(good_keys[0]))

    frozen.freeze()
    try:
        # Fail within the deadline until the breaker opens; then rejected (no I/O:
        # test_rejections.py counts it at a proxy).
        outcomes = [timed(partial(cache.get, key)) for key in bad_keys[:6]]
        assert_within_budget(outcomes)
        assert cache.breaker(frozen.address).state(time.monotonic()) is BreakerState.OPEN
        with pytest.raises(CircuitOpenError):
            cache.get(bad_keys[0])
        during = _latency(lambda: [cache.get(k) for k in good_keys[:3]]) / 3
        assert during < max(10 * healthy, 0.005), (healthy, during)
        for key in good_keys:
            assert cache.get(key) == b"v"
    finally:
        frozen.thaw()
    time.sleep(0.3)  # open interval passes; the next call to the node is the probe
    assert cache.get(bad_keys[0], timeout=1.0) == b"v"
    assert cache.breaker(frozen.address).state(time.monotonic()) is BreakerState.CLOSED
    assert all(cache.get(k) == b"v" for k in bad_keys)


def test_get_many_fail_open_skips_the_failed_node(memcached_cluster: Any,
                                                 make_cache: Callable[..., Memcache]) -> None:
    cache = make_cache(memcached_cluster.addresses, fail_open=True)
    cache.set_many({k: b"v" for k in KEYS}, timeout=2.0)
    groups = _by_node(cache)
    dead = memcached_cluster.members[2]
    dead.kill()
    found = cache.get_many(KEYS)
    assert set(found) == {k for a, ks in groups.items() if a != dead.address for k in ks}


def test_a_killed_node_fails_fast_and_the_others_are_untouched(
        memcached_cluster: Any, make_cache: Callable[..., Memcache]) -> None:
    cache = make_cache(memcached_cluster.addresses)
    cache.set_many({k: b"v" for k in KEYS}, timeout=2.0)
    groups = _by_node(cache)
    dead = memcached_cluster.members[0]
    dead.kill()
    for key in groups[dead.address][:5]:
        start = time.monotonic()
        with pytest.raises(ResilienceError):
            cache.get(key)
        assert time.monotonic() - start < 0.1
    for address, keys in groups.items():
        if address != dead.address:
            assert cache.breaker(address).state(time.monotonic()) is BreakerState.CLOSED
            assert all(cache.get(k) == b"v" for k in keys)


def test_multi_key_operations_keep_their_deadline_on_the_injected_clock(
        memcached_cluster: Any, make_cache: Callable[..., Memcache]) -> None:
    from resilience.testing.clock import FakeClock

    # A fake clock far ahead of the real one: a deadline taken on the real clock would
    # read as long spent, and every node's share would be rejected before any I/O.
    cache = make_cache(memcached_cluster.addresses, clock=FakeClock(start=1e9))
    assert cache.set_many({k: b"v" for k in KEYS}, timeout=2.0) == []
    assert cache.get_many(KEYS, timeout=2.0) == {k: b"v" for k in KEYS}
    assert cache.delete_many(KEYS, timeout=2.0) is True
