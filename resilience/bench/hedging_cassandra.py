"""The Cassandra rows of ``resilience bench --hedging``: one coordinator of three slow.

A 3-node ring (replication factor 3, reads at ONE, so any node can answer any key
from its own copy). The client's only contact point is a fault proxy (a process of its
own) in front of the first node's native port: the driver's control connection goes
there, so the driver keeps the proxy as that host's address and learns the other two
directly. A latency toxic on the proxy makes that one coordinator slow (3 x the
healthy p99, at least 1 ms); the other two stay healthy. Reads are a prepared
``SELECT v FROM kv WHERE k = ?`` over 30 keys, so the token-aware plan spreads the
first attempts over the three hosts.

Rows: no fault (hedging off), then one slow coordinator with hedging off, on with the
default quantile delay and 5 % budget, and on with a fixed delay of the healthy p99
and a 50 % budget: with a third of the calls slow, the recent p95 *is* the slow
latency, so the quantile delay rarely fires; the fixed delay shows what a hedge can
buy there and the extra load it costs.
"""

from __future__ import annotations

import itertools
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

__all__ = ["cassandra_rows"]

KEYS = 30


def _setup(points: list[str]) -> None:
    from resilience.clients.cassandra import Cassandra

    with Cassandra(points, timeout=30.0, consistency="all", environ={}) as db:
        db.execute("CREATE KEYSPACE IF NOT EXISTS hedge_bench WITH replication = "
                   "{'class': 'SimpleStrategy', 'replication_factor': 3}")
        db.execute("CREATE TABLE IF NOT EXISTS hedge_bench.kv (k text PRIMARY KEY, v int)")
        insert = db.prepare("INSERT INTO hedge_bench.kv (k, v) VALUES (?, ?)")
        db.execute_concurrent(insert, [(f"k{i}", i) for i in range(KEYS)], timeout=30.0)


def _client(proxy: str, threads: int, **options: Any) -> Callable[[], Any]:
    from resilience.clients.cassandra import Cassandra
    from resilience.errors import ResilienceError

    def make() -> Any:
        db = Cassandra([proxy], timeout=1.0, retry_attempts=1, consistency="one",
                       keyspace="hedge_bench", breaker_slow_call_duration=5.0,
                       environ={}, **options)
        give_up = time.monotonic() + 30.0
        while True:  # connect, and prepare, outside the measurement (bounded)
            try:
                db.prepare("SELECT v FROM kv WHERE k = ?", timeout=5.0)
                for i in range(KEYS):
                    db.execute(db.prepare("SELECT v FROM kv WHERE k = ?"), (f"k{i}",),
                               timeout=5.0)
                break
            except ResilienceError:
                if time.monotonic() > give_up:
                    db.close()
                    raise
                time.sleep(0.2)
        # The slow host's pool opens in the background, slowly (every round trip pays
        # the toxic); until it is open the requests skip that host and the row would
        # measure two healthy hosts. Wait for it (bounded).
        session = db._driver.get().get(5.0)
        while not any(str(h.endpoint) == proxy and pool.open_count
                      for h, pool in list(session._pools.items())):
            if time.monotonic() > give_up:
                db.close()
                raise RuntimeError(f"the driver has no connection to the host behind the "
                                   f"proxy {proxy}: {db.endpoints}")
            time.sleep(0.1)
        return db

    return make


def cassandra_rows(threads: int, calls: int, hedge: dict[str, Any],
                   load: Callable[..., dict[str, Any]],
                   proxy: Callable[[str, str | None], Any]) -> tuple[list[dict[str, Any]], float]:
    """The rows (and the toxic's ms) with ``load`` and ``proxy`` of :mod:`.hedging`."""
    from resilience.servers.cassandra import ring

    keys = itertools.count()
    answered: Counter[str] = Counter()  # by the coordinator that answered, per row

    def get(db: Any) -> object:
        statement = db.prepare("SELECT v FROM kv WHERE k = ?")  # cached per text
        result = db.execute(statement, (f"k{next(keys) % KEYS}",))
        answered[result.coordinator] += 1
        return result

    def measured(address: str, **options: Any) -> dict[str, Any]:
        answered.clear()
        row = load(_client(address, threads, **options), get, threads, calls)
        slow = answered.pop(address, 0)
        # Warm-up reads included: the share of answers the proxied (slow) host gave.
        row["answered_by_slow_host_pct"] = round(100.0 * slow / (slow + sum(
            answered.values()) or 1), 1)
        return row

    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory() as work:
        nodes = ring(Path(work), nodes=3)
        nodes.start()
        try:
            _setup([f"{h}:{p}" for h, p in nodes.endpoints])
            victim = nodes.members[0]
            upstream = f"{victim.host}:{victim.port}"
            with proxy(upstream, None) as address:
                healthy = measured(address)
            rows.append({"fault": "cassandra: none", "hedging": "off", **healthy})
            latency_ms = max(1.0, 3 * healthy["p99_ms"])
            spec = f"latency:latency_ms={latency_ms:.3f}"
            fixed = {**hedge, "hedge_delay": healthy["p99_ms"] / 1000,
                     "hedge_budget_ratio": 0.5}
            for mode, options in (("off", {}), ("on", hedge),
                                  (f"on, fixed {healthy['p99_ms']} ms, budget 50 %", fixed)):
                with proxy(upstream, spec) as address:
                    row = measured(address, **options)
                rows.append({"fault": "cassandra: 1 of 3 coordinators slow", "hedging": mode,
                             **row})
        finally:
            nodes.stop()
    return rows, latency_ms
