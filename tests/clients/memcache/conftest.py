"""Fixtures of the client tests: wrappers bound to the harness's real servers."""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from resilience.clients.memcache import Memcache

# Fast-reacting settings for tests: a 100 ms budget, a breaker that judges after 4 calls
# and reopens for 200 ms, so open -> half-open -> closed fits in a test. Slow calls are
# judged at 1 s, not the default 100 ms: on a loaded 2-core machine a healthy probe can
# take longer than 50 ms, and a slow probe re-opens the breaker (a different behaviour,
# tested in the core).
FAST: dict[str, Any] = {
    "breaker_slow_call_duration": 1.0,
    "timeout": 0.1,
    "connect_timeout": 0.1,
    "breaker_minimum_calls": 4,
    "breaker_window_size": 4,
    "breaker_open_duration": 0.2,
    "breaker_max_open_duration": 0.2,
    "breaker_jitter": 0.0,
    "environ": {},
}


@pytest.fixture
def make_cache() -> Iterator[Callable[..., Memcache]]:
    """Factory: ``make_cache(["h:p"], **options)`` -> Memcache with FAST defaults, closed
    after the test."""
    made: list[Memcache] = []

    def make(servers: list[str], **options: Any) -> Memcache:
        cache = Memcache(servers, **{**FAST, **options})
        made.append(cache)
        return cache

    yield make
    for cache in made:
        cache.close()


def open_fds() -> int:
    """File descriptors open in this process now."""
    return len(os.listdir("/proc/self/fd"))


def thread_count() -> int:
    return threading.active_count()
