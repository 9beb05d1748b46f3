"""Fixtures of the Cassandra client tests: the session's real node, a keyspace with rows,
and clients with fast-reacting settings.

One JVM serves every single-node test (``real_server("cassandra")``); a fault that must
not touch it goes through a fault proxy in front of it (the driver keeps the proxy's
address as the host's endpoint: a one-node cluster has no peers to learn others from).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import pytest

from resilience.errors import ResilienceError
from resilience.testing._server_fixtures import require_driver

from .._budget import Outcome, check_within_budget
from .._budget import timed as timed

KEYSPACE = "res_test"
ROWS = 30  # rows in KEYSPACE.kv: k0..k29 -> 0..29

# A 100 ms budget, a breaker that judges after 4 calls and reopens for 200 ms.
FAST: dict[str, Any] = {
    "timeout": 0.1,
    "connect_timeout": 2.0,
    "breaker_slow_call_duration": 1.0,
    "breaker_minimum_calls": 4,
    "breaker_window_size": 4,
    "breaker_open_duration": 0.2,
    "breaker_max_open_duration": 0.2,
    "breaker_jitter": 0.0,
    "environ": {},
}
BUDGET = 0.1
SMALL = 0.03   # the median faulted call ends within BUDGET + SMALL
MARGIN = 0.3   # any single call within BUDGET + MARGIN (a loaded 2-core machine)


@pytest.fixture(scope="session")
def node(real_server: Callable[[str], Any]) -> Any:
    require_driver("cassandra", "cassandra.cluster")
    server = real_server("cassandra")
    from resilience.clients.cassandra import Cassandra

    with Cassandra([f"127.0.0.1:{server.port}"], timeout=30.0, environ={}) as db:
        db.execute(f"CREATE KEYSPACE IF NOT EXISTS {KEYSPACE} WITH replication = "
                   "{'class': 'SimpleStrategy', 'replication_factor': 1}")
        db.execute(f"CREATE TABLE IF NOT EXISTS {KEYSPACE}.kv (k text PRIMARY KEY, v int)")
        db.execute(f"CREATE TABLE IF NOT EXISTS {KEYSPACE}.counts "
                   "(k text PRIMARY KEY, n counter)")
        insert = db.prepare(f"INSERT INTO {KEYSPACE}.kv (k, v) VALUES (?, ?)")
        db.execute_concurrent(insert, [(f"k{i}", i) for i in range(ROWS)], timeout=30.0)
    return server


@pytest.fixture
def contact(node: Any) -> str:
    return f"127.0.0.1:{node.port}"


@pytest.fixture
def make_db() -> Iterator[Callable[..., Any]]:
    """Factory: ``make_db(contact, **options)`` -> Cassandra with FAST defaults (closed
    after the test); ``make_db(..., kind=AsyncCassandra)`` for the asyncio one."""
    from resilience.clients.cassandra import Cassandra

    made: list[Any] = []

    def make(points: str | list[str], *, kind: Any = Cassandra, **options: Any) -> Any:
        db = kind(points, **{**FAST, "keyspace": KEYSPACE, **options})
        made.append(db)
        return db

    yield make
    for db in made:
        db.close()


def connected(db: Any, within: float = 20.0) -> None:
    """Wait until ``db`` has connected (its first calls may time out while it does)."""
    give_up = time.monotonic() + within
    while True:
        try:
            db.execute("SELECT v FROM kv WHERE k = 'k1'", timeout=2.0)
            return
        except ResilienceError:
            if time.monotonic() > give_up:
                raise
            time.sleep(0.1)


def assert_within_budget(outcomes: Sequence[Outcome], budget: float = BUDGET,
                         what: str = "") -> None:
    """:func:`check_within_budget` with this package's slack."""
    check_within_budget(outcomes, budget, SMALL, MARGIN, what)
