"""Control applied to live clients in this process, against a real memcached: breaker
modes take effect on the next call, a timeout on the next call, and removing a key
undoes only what control did."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest

from resilience.clients import live_clients
from resilience.clients.memcache import Memcache
from resilience.control._apply import Applier
from resilience.core.breaker import BreakerState
from resilience.errors import BackendTimeoutError, CircuitOpenError, ConfigError


@pytest.fixture
def cache(memcached: Any) -> Iterator[Memcache]:
    c = Memcache([memcached.address], timeout=3.0, connect_timeout=1.0, environ={},
                 retry_attempts=1)
    yield c
    c.close()


def _state(cache: Memcache) -> BreakerState:
    return cache.breaker(cache.endpoints[0]).state(time.monotonic())


def test_breaker_modes_apply_and_undo(cache: Memcache) -> None:
    applier = Applier(live_clients)
    assert cache.set("k", b"v")
    assert applier.apply({"memcache.breaker": "forced_open"}) >= 1
    with pytest.raises(CircuitOpenError):
        cache.get("k")
    assert applier.apply({"memcache.breaker": "forced_open"}) == 0  # nothing new
    applier.apply({f"memcache@{cache.endpoints[0]}.breaker": "disabled",
                   "memcache.breaker": "forced_open"})  # the endpoint's key wins
    assert _state(cache) is BreakerState.DISABLED and cache.get("k") == b"v"
    applier.apply({})
    assert _state(cache) is BreakerState.CLOSED and cache.get("k") == b"v"


def test_normal_leaves_a_breaker_control_never_forced(cache: Memcache) -> None:
    cache.breaker(cache.endpoints[0]).force_open()  # an operator's own action
    Applier(live_clients).apply({"memcache.breaker": "normal", "nsq.breaker": "forced_open"})
    assert _state(cache) is BreakerState.FORCED_OPEN


def test_timeout_applies_to_the_next_call_and_is_restored(cache: Memcache,
                                                          memcached: Any) -> None:
    """With a 3 s default, a call to a frozen memcached takes 3 s; after
    memcache.timeout_ms=50 the next one fails in well under a second."""
    applier = Applier(live_clients)
    assert cache.get("k") is None  # connected
    applier.apply({"memcache.timeout_ms": 50})
    assert cache.options.timeout == 0.05
    memcached.freeze()
    try:
        began = time.monotonic()
        with pytest.raises(BackendTimeoutError):
            cache.get("k")
        assert time.monotonic() - began < 1.0
    finally:
        memcached.thaw()
    applier.apply({})
    assert cache.options.timeout == 3.0
    assert cache.get("k") is None


def test_skipped_client_is_untouched(cache: Memcache) -> None:
    Applier(live_clients, skip=cache).apply({"memcache.breaker": "forced_open"})
    assert _state(cache) is BreakerState.CLOSED


def test_set_timeout_refuses_a_bad_value(cache: Memcache) -> None:
    with pytest.raises(ConfigError, match="timeout=0"):
        cache.set_timeout(0)
    assert cache.options.timeout == 3.0
