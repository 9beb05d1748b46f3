"""The healthy path on a real node: statements, prepared statements, pages, LWT results,
batches, bulk reads, caller mistakes; sync and asyncio."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from resilience.errors import CircuitOpenError
from tests.clients.cassandra.conftest import KEYSPACE, ROWS

pytestmark = [pytest.mark.servers("cassandra"), pytest.mark.slow]


def test_reads_writes_prepared_pages_lwt_batch_and_bulk_reads(make_db: Any,
                                                             contact: str) -> None:
    """Every kind of call answers on a healthy node, with the host that coordinated it."""
    db = make_db(contact, timeout=5.0)
    row = db.execute("SELECT v FROM kv WHERE k = %s", ("k7",)).one()
    assert row.v == 7
    get = db.prepare("SELECT v FROM kv WHERE k = ?")
    assert db.prepare("SELECT v FROM kv WHERE k = ?") is get  # cached per text
    result = db.execute(get, ("k8",))
    assert result.one().v == 8 and result.coordinator == contact
    assert db.endpoints == ("cluster", contact)
    first = db.execute("SELECT k FROM kv", fetch_size=7)
    assert len(first.rows) == 7 and first.has_more_pages
    keys = [r.k for r in first]  # every page; other tests add rows of their own
    assert len(keys) == len(set(keys)) and {f"k{i}" for i in range(ROWS)} <= set(keys)
    db.execute("DELETE FROM kv WHERE k = 'lwt'")
    lwt = "INSERT INTO kv (k, v) VALUES ('lwt', 1) IF NOT EXISTS"
    assert db.execute(lwt).was_applied is True
    assert db.execute(lwt).was_applied is False  # not applied: a result, not an error
    db.batch([("INSERT INTO kv (k, v) VALUES (%s, %s)", ("b1", 1)),
              ("INSERT INTO kv (k, v) VALUES (%s, %s)", ("b2", 2))], idempotent=True)
    many = db.execute_concurrent(get, [("b1",), ("b2",), ("nope",)])
    assert [r.one().v if r.one() else None for r in many] == [1, 2, None]


def test_caller_mistakes_pass_through_and_count_nothing(make_db: Any, contact: str) -> None:
    """Bad CQL, a missing table and wrong bind values raise the driver's own exception,
    never retried, and a run of them never opens the host's breaker."""
    import cassandra

    db = make_db(contact, timeout=5.0)
    for _ in range(8):
        with pytest.raises(cassandra.InvalidRequest):
            db.execute("SELECT nope FROM kv")
        with pytest.raises(cassandra.InvalidRequest):
            db.execute("SELECT * FROM missing_table")
    with pytest.raises(ValueError, match="consistency"):
        db.execute("SELECT * FROM kv", consistency="most")
    assert db.execute("SELECT v FROM kv WHERE k = 'k1'").one().v == 1
    assert db.breaker(contact).state(0).value == "closed"
    assert db.breaker("cluster").state(0).value == "closed"


def test_async_client_answers_pages_and_prepares(make_db: Any, contact: str) -> None:
    """AsyncCassandra: the same calls awaited, rows of every page with ``async for``."""
    from resilience.clients.cassandra import AsyncCassandra

    async def main() -> None:
        db = make_db(contact, kind=AsyncCassandra, timeout=5.0)
        get = await db.prepare("SELECT v FROM kv WHERE k = ?")
        assert (await db.execute(get, ("k3",))).one().v == 3
        first = await db.execute("SELECT k FROM kv", fetch_size=10)
        assert len([r async for r in first]) >= ROWS
        many = await db.execute_concurrent(get, [(f"k{i}",) for i in range(5)])
        assert [r.one().v for r in many] == [0, 1, 2, 3, 4]
        assert (await db.execute("SELECT v FROM kv WHERE k = 'k1'", consistency="one")
                ).one().v == 1
        await db.aclose()

    asyncio.run(main())


def test_closed_client_fails_at_once(make_db: Any, contact: str) -> None:
    """After close() a call raises 'client is closed' without I/O."""
    from resilience.errors import BackendUnavailableError

    db = make_db(contact, timeout=5.0)
    db.execute("SELECT v FROM kv WHERE k = 'k1'")
    db.close()
    with pytest.raises(BackendUnavailableError, match="closed"):
        db.execute("SELECT v FROM kv WHERE k = 'k1'")


def test_keyspace_option_comes_from_the_environment(contact: str, node: Any) -> None:
    """RESILIENCE_CASSANDRA_KEYSPACE and _CONTACT_POINTS configure a client without
    arguments; the password never shows in its options' repr."""
    from resilience.clients.cassandra import Cassandra

    env = {"RESILIENCE_CASSANDRA_CONTACT_POINTS": contact,
           "RESILIENCE_CASSANDRA_KEYSPACE": KEYSPACE,
           "RESILIENCE_CASSANDRA_PASSWORD": "s3cret", "RESILIENCE_CASSANDRA_TIMEOUT_MS": "5000"}
    with Cassandra(environ=env) as db:
        assert "s3cret" not in repr(db.options) and "s3cret" not in repr(db)
        assert db.execute("SELECT v FROM kv WHERE k = 'k2'").one().v == 2


def test_open_breakers_reject_without_io(make_db: Any, contact: str) -> None:
    """With the host's breaker forced open, a call fails with CircuitOpenError at once."""
    db = make_db(contact, timeout=5.0)
    db.execute("SELECT v FROM kv WHERE k = 'k1'")
    db.breaker(contact).force_open()
    with pytest.raises(CircuitOpenError):
        db.execute("SELECT v FROM kv WHERE k = 'k1'")
    db.breaker(contact).reset()
    assert db.execute("SELECT v FROM kv WHERE k = 'k1'").one().v == 1


def test_a_contact_point_name_is_resolved_in_the_connect(make_db: Any, node: Any) -> None:
    """A host name (not an IP literal) is resolved inside the background connect, and
    the host is known by its address."""
    db = make_db(f"localhost:{node.port}", timeout=5.0)
    assert db.execute("SELECT v FROM kv WHERE k = 'k4'").one().v == 4
    assert db.endpoints == ("cluster", f"127.0.0.1:{node.port}")
