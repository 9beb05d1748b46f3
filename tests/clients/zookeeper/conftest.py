"""Fixtures of the ZooKeeper client tests: wrappers bound to the harness's real servers.

``make_zk`` builds the sync :class:`ZooKeeper` with fast-reacting test settings;
``make_client`` is parametrised over both wrappers behind one blocking interface.
Paths are unique per test (``path`` fixture): the standalone server is shared.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from resilience.clients.zookeeper import AsyncZooKeeper, ZooKeeper
from resilience.testing._server_fixtures import require_driver

from .._blocking import Blocking, blocking_factory

FAST: dict[str, Any] = {
    "timeout": 0.1,
    "connect_timeout": 2.0,
    "session_timeout": 2.0,
    "breaker_slow_call_duration": 1.0,
    "breaker_minimum_calls": 4,
    "breaker_window_size": 4,
    "breaker_open_duration": 0.2,
    "breaker_max_open_duration": 0.2,
    "breaker_jitter": 0.0,
    "environ": {},
}
BUDGET = 0.1
SMALL = 0.03
MARGIN = 0.25


@pytest.fixture
def path() -> str:
    """A path no other test uses."""
    return f"/t-{uuid.uuid4().hex[:12]}"


@pytest.fixture
def make_zk() -> Iterator[Callable[..., ZooKeeper]]:
    """Factory: ``make_zk(hosts, **options)`` -> ZooKeeper with FAST defaults, closed after."""
    require_driver("zookeeper", "kazoo")
    made: list[ZooKeeper] = []

    def make(hosts: str, **options: Any) -> ZooKeeper:
        zk = ZooKeeper(hosts, **{**FAST, **options})
        made.append(zk)
        return zk

    yield make
    for zk in made:
        zk.close()


class Client(Blocking):
    """A ZooKeeper or an AsyncZooKeeper behind one blocking interface (``client.zk``)."""

    @property
    def zk(self) -> ZooKeeper | AsyncZooKeeper:
        return self.wrapped  # type: ignore[no-any-return]


MakeClient = Callable[..., Client]


@pytest.fixture(params=["sync", "async"])
def make_client(request: pytest.FixtureRequest) -> Iterator[MakeClient]:
    """Factory over ZooKeeper (``[sync]``) and AsyncZooKeeper (``[async]``)."""
    require_driver("zookeeper", "kazoo")
    yield from blocking_factory(request.param, Client, ZooKeeper, AsyncZooKeeper, FAST)
