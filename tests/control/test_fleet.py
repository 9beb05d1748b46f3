"""Several real processes against the real 3-member ZooKeeper ensemble: a change made
with one write reaches every process within a second; with the whole ensemble frozen
(SIGSTOP) their memcached calls are unaffected and the control age grows; after the
thaw a change made then arrives everywhere."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from resilience.clients.zookeeper import ZooKeeper
from resilience.control import dumps, node_path
from resilience.testing._server_fixtures import require_driver

from ._fleet import Worker, applied_at, wait_until

PROCESSES = 3
pytestmark = [pytest.mark.servers("zookeeper", "memcached"), pytest.mark.slow,
              pytest.mark.timeout(180)]


@pytest.fixture
def fleet(zookeeper_ensemble: Any, memcached: Any) -> Iterator[tuple[str, list[Worker]]]:
    require_driver("zookeeper", "kazoo")
    service = f"fleet-{uuid.uuid4().hex[:8]}"
    workers = [Worker(zookeeper_ensemble.hosts, service, memcached.address)
               for _ in range(PROCESSES)]
    try:
        try:
            wait_until(lambda: all(w.seen("ready") for w in workers), 60.0, "workers ready")
            wait_until(lambda: all(w.seen("applied") for w in workers), 30.0, "first sync")
        except AssertionError as exc:
            raise AssertionError(f"{exc}: {[w.stop() for w in workers]}") from None
        yield service, workers
    finally:
        for w in workers:
            w.stop()


def _write(zk: ZooKeeper, path: str, settings: dict[str, Any]) -> int:
    """Write the node; returns its new zxid (the version agents report)."""
    got = zk.get(path)
    if got is None:
        zk.create(path, dumps(settings), makepath=True)
    else:
        zk.set(path, dumps(settings))
    got = zk.get(path)
    assert got is not None
    return int(got[1].mzxid)


def _spread(workers: list[Worker], version: int, since: float) -> list[float]:
    """Seconds from ``since`` until each worker applied ``version``."""
    wait_until(lambda: all(applied_at(w, version) for w in workers), 30.0,
               f"version {version} applied everywhere")
    return [float(applied_at(w, version) or 0.0) - since for w in workers]


def test_change_reaches_every_process(fleet: tuple[str, list[Worker]],
                                      zookeeper_ensemble: Any) -> None:
    service, workers = fleet
    path = node_path(service)
    with ZooKeeper(zookeeper_ensemble.hosts, timeout=2.0, connect_timeout=5.0,
                   environ={}) as zk:
        for settings in ({"memcache.breaker": "forced_open"}, {"memcache.timeout_ms": 70}):
            began = time.time()
            version = _write(zk, path, settings)
            lags = _spread(workers, version, began)
            print(f"{settings}: applied in {PROCESSES} processes after "
                  f"{', '.join(f'{x * 1000:.0f} ms' for x in lags)}")
            # The goal is 1 s (measured: 20-146 ms, docs/control.md); loose for a loaded CI.
            assert max(lags) < 3.0, lags
        # What the calls saw: the forced-open breaker is gone, the new timeout is in.
        wait_until(lambda: all(
            (t := w.seen("tick")) and t[-1]["state"] == "closed" and t[-1]["timeout"] == 0.07
            for w in workers), 5.0, "ticks show closed breaker, 70 ms timeout")


def test_frozen_ensemble_calls_unaffected_then_resync(
        fleet: tuple[str, list[Worker]], zookeeper_ensemble: Any) -> None:
    service, workers = fleet
    path = node_path(service)
    members = list(zookeeper_ensemble)
    with ZooKeeper(zookeeper_ensemble.hosts, timeout=2.0, connect_timeout=5.0,
                   environ={}) as zk:
        before = _write(zk, path, {"memcache.timeout_ms": 90})
        _spread(workers, before, time.time() - 1)
        for m in members:
            m.freeze()
        frozen_at = time.time()
        try:
            time.sleep(4.0)
        finally:
            for m in members:
                m.thaw()
        thawed_at = time.time()
        for w in workers:
            ticks = [t for t in w.seen("tick", frozen_at) if t["t"] <= thawed_at]
            assert len(ticks) >= 10, ticks
            assert sum(t["calls"] for t in ticks) >= 100
            assert sum(t["errors"] for t in ticks) == 0, ticks  # memcached unaffected
            assert max(t["slowest"] for t in ticks) < 0.1  # within the call's own budget
            assert all(t["version"] == before and t["timeout"] == 0.09 for t in ticks)
            assert ticks[-1]["age"] > 2.5, ticks[-1]  # ZooKeeper confirmed nothing since
        print("ages at thaw: " + ", ".join(
            f"{w.seen('tick', frozen_at)[-1]['age']:.1f} s" for w in workers))

        # A change cannot be written while frozen: write it after the thaw.
        versions: list[int] = []
        starts: list[float] = []

        def written() -> bool:
            starts.append(time.time())  # the attempt that succeeds is the last one
            try:
                versions.append(_write(zk, path, {"memcache.timeout_ms": 60}))
                return True
            except Exception:
                return False

        wait_until(written, 30.0, "a write after the thaw")
        after, wrote_at = versions[0], starts[-1]
        lags = _spread(workers, after, wrote_at)
        print(f"after the thaw: written {wrote_at - thawed_at:.1f} s after it, applied "
              f"{', '.join(f'{x * 1000:.0f} ms' for x in lags)} after the write")
        wait_until(lambda: all((t := w.seen("tick")) and t[-1]["age"] < 1.0 for w in workers),
                   10.0, "ages back under a second")
