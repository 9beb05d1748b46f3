"""Fixtures of the client tests: wrappers bound to the harness's real servers.

``make_cache`` builds the sync :class:`Memcache`; ``make_client`` is parametrised over
both wrappers (``sync`` and ``async``) behind one blocking interface, so a fault
scenario is written once and runs against each.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from typing import Any

import pytest

from resilience.clients.memcache import AsyncMemcache, Memcache

from .._blocking import Blocking, blocking_factory
from .._budget import Outcome, check_within_budget
from .._budget import open_fds as open_fds
from .._budget import thread_count as thread_count
from .._budget import timed as timed

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

BUDGET = 0.1  # FAST["timeout"]
# A faulted call must end by its deadline plus this. Tight enough that a retry given a
# fresh budget (about 2 x BUDGET) fails, loose enough for scheduling noise; it is held
# by the median of several calls, single calls only by MARGIN.
SMALL = 0.03
MARGIN = 0.25  # per call: a loaded 2-core machine can stall any one call


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


class Client(Blocking):
    """A Memcache or an AsyncMemcache behind one blocking interface (``.cache``)."""

    @property
    def cache(self) -> Memcache | AsyncMemcache:
        return self.wrapped  # type: ignore[no-any-return]


MakeClient = Callable[..., Client]


@pytest.fixture(params=["sync", "async"])
def make_client(request: pytest.FixtureRequest) -> Iterator[MakeClient]:
    """Factory: ``make_client(["h:p"], **options)`` -> a :class:`Client` with FAST
    defaults over Memcache (``[sync]``) or AsyncMemcache (``[async]``)."""
    yield from blocking_factory(request.param, Client, Memcache, AsyncMemcache, FAST)


def assert_within_budget(outcomes: Sequence[Outcome], budget: float = BUDGET,
                         what: str = "") -> None:
    """:func:`check_within_budget` with this package's slack; every error has .elapsed."""
    check_within_budget(outcomes, budget, SMALL, MARGIN, what, require_elapsed=True)
