"""Node loss in a 3-node ring: one node frozen, reads keep answering within budget
through the other coordinators, the bad host's breaker opens and closes after the heal.

One ring for the module (three JVMs start in 15-25 s on two busy cores); the keyspace
has replication factor 3, so every node holds every row.
"""

from __future__ import annotations

import contextlib
import functools
import time
from collections.abc import Iterator
from typing import Any

import pytest

from resilience.errors import BackendTimeoutError, ResilienceError
from resilience.servers._base import ServerError
from resilience.testing._server_fixtures import require_driver, require_installed
from tests.clients.cassandra.conftest import FAST, MARGIN, timed

# timeout: starting three Cassandra nodes and a keyspace at RF 3 took 60-130 s on two
# cores, past the suite's 120 s per test, which also covers fixture set-up.
pytestmark = [pytest.mark.servers("cassandra"), pytest.mark.slow, pytest.mark.timeout(360)]

BUDGET = 0.5  # four JVMs on two busy cores: a healthy read can take a few 100 ms


@pytest.fixture(scope="module")
def ring(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    require_installed("cassandra")
    require_driver("cassandra", "cassandra.cluster")
    from resilience.clients.cassandra import Cassandra
    from resilience.servers.cassandra import ring as make_ring

    nodes = make_ring(tmp_path_factory.mktemp("cassandra-ring"), nodes=3)
    try:
        nodes.start()
    except ServerError as exc:
        pytest.fail(f"cassandra ring did not start:\n{exc}", pytrace=False)
    try:
        points = [f"{h}:{p}" for h, p in nodes.endpoints]
        with Cassandra(points, timeout=30.0, consistency="all", environ={}) as db:
            db.execute("CREATE KEYSPACE IF NOT EXISTS ring_ks WITH replication = "
                       "{'class': 'SimpleStrategy', 'replication_factor': 3}")
            db.execute("CREATE TABLE IF NOT EXISTS ring_ks.kv (k text PRIMARY KEY, v int)")
            insert = db.prepare("INSERT INTO ring_ks.kv (k, v) VALUES (?, ?)")
            db.execute_concurrent(insert, [(f"k{i}", i) for i in range(30)], timeout=30.0)
        yield nodes
    finally:
        nodes.stop()


@pytest.mark.parametrize("consistency", ["one", "local_quorum"])
def test_frozen_node_reads_go_to_the_other_coordinators(ring: Any, consistency: str) -> None:
    """With one node frozen: every read ends within budget; failures come only from the
    frozen host until its breaker opens; then every read succeeds through the other two;
    after the thaw the breaker closes again."""
    from resilience.clients.cassandra import Cassandra

    points = [f"{h}:{p}" for h, p in ring.endpoints]
    victim = ring.members[1]
    bad = f"{victim.host}:{victim.port}"
    # Open for 6 s: a half-open probe (one read per open interval) goes to the frozen
    # host and times out; none falls inside the 40 reads checked here.
    options = {**FAST, "timeout": BUDGET, "consistency": consistency, "keyspace": "ring_ks",
               "breaker_open_duration": 6.0, "breaker_max_open_duration": 6.0,
               # One host's failures are a third of the calls: the cluster's breaker
               # must not judge on four of them.
               "breaker_window_size": 10, "breaker_minimum_calls": 6}
    with Cassandra(points, **options) as db:
        get = db.prepare("SELECT v FROM kv WHERE k = ?", timeout=10.0)
        for i in range(6):
            db.execute(get, (f"k{i}",), timeout=5.0)
        assert set(db.endpoints) == {"cluster", *points}
        with victim.frozen_for():
            outcomes = [timed(functools.partial(db.execute, get, (f"k{i % 30}",)))
                        for i in range(40)]
            for wall, err in outcomes:
                assert wall < BUDGET + MARGIN, outcomes
                # Mostly the frozen host; at ONE a healthy coordinator may also have
                # asked the frozen replica (Cassandra's snitch) before it was convicted.
                assert err is None or isinstance(err, BackendTimeoutError), err
            assert sum(1 for _, e in outcomes if e is not None and e.endpoint == bad) >= 4
            assert db.breaker(bad).state(time.monotonic()).value in ("open", "half_open")
            assert all(err is None for _, err in outcomes[-15:]), outcomes[-15:]
            assert db.breaker("cluster").state(time.monotonic()).value == "closed"
        give_up = time.monotonic() + 30.0
        while db.breaker(bad).state(time.monotonic()).value != "closed":
            assert time.monotonic() < give_up, "the healed host's breaker never closed"
            time.sleep(0.05)
            with contextlib.suppress(ResilienceError):
                db.execute(get, ("k1",), timeout=1.0)
