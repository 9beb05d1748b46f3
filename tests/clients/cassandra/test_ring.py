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
            # A live coordinator whose chosen replica is the frozen node asks another
            # replica after 50 ms (the default waits for the table's p99 first: a read
            # at ONE then hung for 3 s on a live coordinator, once in about ten full
            # runs). The tests are about the client's routing, not the server's.
            db.execute("CREATE TABLE IF NOT EXISTS ring_ks.kv (k text PRIMARY KEY, v int) "
                       "WITH speculative_retry = '50ms'")
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


# ---- hedged SELECT (docs/hedging.md#cassandra) ------------------------------------------

HEDGED: dict[str, Any] = {
    **FAST, "timeout": 3.0, "consistency": "one", "keyspace": "ring_ks",
    "hedge_enabled": True, "hedge_delay": 0.15, "hedge_budget_ratio": 1.0,
    # A failure recorded on the frozen host would show in its breaker's window.
    "breaker_window_size": 20, "breaker_minimum_calls": 20,
}


def _hedge_policy(db: Any) -> Any:
    from resilience.core.hedge import HedgePolicy

    assert isinstance(db._hedge, HedgePolicy)
    return db._hedge


def _hedged_reads_sync(points: list[str], victim: Any, seen: list[Any]) -> tuple[Any, ...]:
    from resilience.clients.cassandra import Cassandra

    with Cassandra(points, **HEDGED) as db:
        db.events.add_listener(seen.append)
        get = db.prepare("SELECT v FROM kv WHERE k = ?", timeout=10.0)
        for i in range(9):  # a connection to every host, and the delay's samples
            db.execute(get, (f"k{i}",), timeout=5.0)
        out = []
        # Before the freeze: a request sent while the driver's pool to a host was still
        # opening counts a failure on that host (it never left), not the hedge's doing.
        before = db.breaker(f"{victim.host}:{victim.port}").snapshot(time.monotonic())
        with victim.frozen_for():
            for i in range(9):
                began = time.monotonic()
                result = db.execute(get, (f"k{i}",))
                out.append((time.monotonic() - began, result.one()[0], result.coordinator))
        time.sleep(1.0)  # the thawed host's late answers to the abandoned requests
        return out, _hedge_policy(db), before, db.breaker(
            f"{victim.host}:{victim.port}").snapshot(time.monotonic())


def _hedged_reads_async(points: list[str], victim: Any, seen: list[Any]) -> tuple[Any, ...]:
    import asyncio

    from resilience.clients.cassandra import AsyncCassandra

    async def main() -> tuple[Any, ...]:
        async with AsyncCassandra(points, **HEDGED) as db:
            db.events.add_listener(seen.append)
            get = await db.prepare("SELECT v FROM kv WHERE k = ?", timeout=10.0)
            for i in range(9):
                await db.execute(get, (f"k{i}",), timeout=5.0)
            out = []
            before = db.breaker(f"{victim.host}:{victim.port}").snapshot(time.monotonic())
            with victim.frozen_for():
                for i in range(9):
                    began = time.monotonic()
                    result = await db.execute(get, (f"k{i}",))
                    out.append((time.monotonic() - began, result.one()[0], result.coordinator))
            await asyncio.sleep(1.0)
            return out, _hedge_policy(db), before, db.breaker(
                f"{victim.host}:{victim.port}").snapshot(time.monotonic())

    return asyncio.run(main())


@pytest.mark.parametrize("kind", ["sync", "async"])
def test_a_hedged_select_wins_from_another_coordinator(ring: Any, kind: str) -> None:
    """One node frozen: a SELECT sent to it is hedged to another coordinator, whose
    answer wins well before the budget; the abandoned attempt on the frozen node (even
    its late answer after the thaw) records nothing on that host's breaker."""
    points = [f"{h}:{p}" for h, p in ring.endpoints]
    victim = ring.members[2]
    bad = f"{victim.host}:{victim.port}"
    seen: list[Any] = []
    run = _hedged_reads_sync if kind == "sync" else _hedged_reads_async
    out, policy, before, snap = run(points, victim, seen)
    assert [v for _, v, _ in out] == list(range(9)), out
    assert all(c != bad for _, _, c in out), out  # every answer came from a live host
    assert all(wall < HEDGED["timeout"] / 2 for wall, _, _ in out), out
    assert policy.won >= 1, (policy, out)  # some first attempts went to the frozen host
    assert sum(e.kind == "hedge" for e in seen) == policy.sent
    assert all(e.attempt_kind == "hedge" for e in seen if e.kind == "hedge")
    assert not [e for e in seen if e.kind == "failure"], seen
    assert snap["state"] == "closed", snap
    assert snap["failures"] == before["failures"], (before, snap)


def test_the_budget_caps_cassandra_hedges(ring: Any) -> None:
    """A delay every read exceeds: every call wants a hedge; 10 % may have one."""
    from resilience.clients.cassandra import Cassandra

    points = [f"{h}:{p}" for h, p in ring.endpoints]
    options = {**HEDGED, "hedge_delay": 0.0005, "hedge_budget_ratio": 0.1,
               "hedge_budget_min_per_second": 0.0}
    calls = 40
    with Cassandra(points, **options) as db:
        get = db.prepare("SELECT v FROM kv WHERE k = ?", timeout=10.0)
        seen: list[Any] = []
        db.events.add_listener(seen.append)
        for i in range(calls):
            assert db.execute(get, (f"k{i % 30}",)).one()[0] == i % 30
        policy = _hedge_policy(db)
        assert 1 <= policy.sent <= calls * 0.1 + 1, policy
        assert policy.refused >= calls // 2, policy
        assert sum(e.kind == "hedge" for e in seen) == policy.sent


def test_writes_serial_reads_and_later_pages_never_hedge(ring: Any) -> None:
    from resilience.clients.cassandra import Cassandra

    points = [f"{h}:{p}" for h, p in ring.endpoints]
    with Cassandra(points, **{**HEDGED, "hedge_delay": 0.0005}) as db:
        seen: list[Any] = []
        db.events.add_listener(seen.append)
        db.execute("INSERT INTO kv (k, v) VALUES ('w1', 1)", idempotent=True)
        db.execute("UPDATE kv SET v = 2 WHERE k = 'w1'")
        db.execute("INSERT INTO kv (k, v) VALUES ('w2', 1) IF NOT EXISTS")
        db.batch([("INSERT INTO kv (k, v) VALUES (%s, %s)", ("w3", 3))], idempotent=True)
        db.execute("SELECT v FROM kv WHERE k = 'w1'", consistency="serial")
        assert db.execute("SELECT v FROM kv WHERE k = 'w1'", idempotent=False).one()[0] == 2
        policy = _hedge_policy(db)
        assert policy.sent == policy.refused == 0, policy
        first = db.execute("SELECT k FROM kv", fetch_size=5)
        started = policy.sent + policy.refused
        assert started <= 1, policy  # the first page may be hedged
        assert len(list(first)) >= 30  # five more pages, none hedged
        assert policy.sent + policy.refused == started, policy
        assert sum(e.kind == "hedge" for e in seen) == policy.sent


def test_the_first_host_is_the_one_the_token_aware_plan_starts_with(ring: Any) -> None:
    """The client finds a read's first host without the policy's generators
    (``_replica.FirstReplica``): for every key it is the host the driver's
    TokenAwarePolicy plan yields first, and each of the three nodes is first for some
    keys (so the lookup really follows the ring, not one fixed host)."""
    from resilience.clients.cassandra import Cassandra

    points = [f"{h}:{p}" for h, p in ring.endpoints]
    with Cassandra(points, timeout=5.0, keyspace="ring_ks", environ={}) as db:
        get = db.prepare("SELECT v FROM kv WHERE k = ?", timeout=10.0)
        db.execute(get, ("k0",))
        connector = db._driver.get()
        keyspace = connector.session.keyspace
        firsts = set()
        for i in range(300):
            bound = get.bind((f"key-{i}",))
            expected = next(iter(connector.policy.child.make_query_plan(keyspace, bound)))
            assert connector.first(keyspace, bound) is expected, f"key-{i}"
            firsts.add(expected)
        assert len(firsts) == 3
        # No routing key (plain CQL text): not answered here, the whole plan is walked.
        from cassandra.query import SimpleStatement

        assert connector.first(keyspace, SimpleStatement("SELECT v FROM kv")) is None
