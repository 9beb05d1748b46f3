"""Fixtures of the NSQ client tests: publishers bound to the harness's real nsqd.

``make_publisher`` is parametrised over both publishers (``sync`` and ``async``) behind
one blocking interface, so a scenario is written once and runs against each. Helpers
read nsqd's own counters (``/stats``), so "acknowledged" is checked at the server.
"""

from __future__ import annotations

import itertools
import json
import os
import urllib.request
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import pytest

from resilience.clients.nsq import AsyncPublisher, Publisher

from .._blocking import Blocking, blocking_factory
from .._budget import Outcome, check_within_budget
from .._budget import open_fds as open_fds
from .._budget import thread_count as thread_count
from .._budget import timed as timed

# A 200 ms budget, a 100 ms connect cap, a breaker that judges after 4 calls and
# reopens for 200 ms. Slow calls are judged at 1 s, not the default: on a loaded 2-core
# machine a healthy publish can take longer than a few ms.
FAST: dict[str, Any] = {
    "breaker_slow_call_duration": 1.0,
    "timeout": 0.2,
    "connect_timeout": 0.1,
    "breaker_minimum_calls": 4,
    "breaker_window_size": 4,
    "breaker_open_duration": 0.2,
    "breaker_max_open_duration": 0.2,
    "breaker_jitter": 0.0,
    "environ": {},
}
BUDGET = 0.2
SMALL = 0.03   # median slack over the budget
MARGIN = 0.25  # any one call on a loaded machine

_topics = itertools.count()


def new_topic(prefix: str = "t") -> str:
    """A topic name no other test uses."""
    return f"{prefix}-{os.getpid()}-{next(_topics)}"


class Pub(Blocking):
    """A Publisher or an AsyncPublisher behind one blocking interface (``.pub``)."""

    @property
    def pub(self) -> Publisher | AsyncPublisher:
        return self.wrapped  # type: ignore[no-any-return]


MakePub = Callable[..., Pub]


@pytest.fixture(params=["sync", "async"])
def make_publisher(request: pytest.FixtureRequest) -> Iterator[MakePub]:
    """Factory: ``make_publisher(["h:p", ...], **options)`` -> a :class:`Pub` with FAST
    defaults over Publisher (``[sync]``) or AsyncPublisher (``[async]``)."""
    yield from blocking_factory(request.param, Pub, Publisher, AsyncPublisher, FAST)


def stats(http_address: str, topic: str) -> dict[str, Any]:
    """nsqd's ``/stats`` of ``topic`` (empty if the topic does not exist)."""
    url = f"http://{http_address}/stats?format=json&topic={topic}"
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    with opener.open(url, timeout=2.0) as resp:
        topics = json.loads(resp.read()).get("topics") or []
    return dict(topics[0]) if topics else {}


def message_count(http_address: str, topic: str) -> int:
    """Messages nsqd queued on ``topic`` since it started."""
    return int(stats(http_address, topic).get("message_count", 0))


def finished(http_address: str, topic: str, channel: str) -> int:
    """Messages nsqd counts as FINished on ``channel`` of ``topic`` by the clients
    connected now (nsqd keeps the count per client connection)."""
    channels = stats(http_address, topic).get("channels") or []
    return sum(int(client.get("finish_count", 0)) for c in channels
               if c["channel_name"] == channel for client in c.get("clients") or [])


def create_channel(http_address: str, topic: str, channel: str) -> None:
    """Create ``topic`` and ``channel`` on one nsqd, so no message is published before
    the consumer's channel exists (a channel created later misses earlier messages)."""
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    for path in (f"/topic/create?topic={topic}",
                 f"/channel/create?topic={topic}&channel={channel}"):
        req = urllib.request.Request(f"http://{http_address}{path}", method="POST")
        with opener.open(req, timeout=2.0) as resp:
            assert resp.status == 200


def assert_within_budget(outcomes: Sequence[Outcome], budget: float = BUDGET,
                         what: str = "") -> None:
    """:func:`check_within_budget` with this package's slack."""
    check_within_budget(outcomes, budget, SMALL, MARGIN, what)
