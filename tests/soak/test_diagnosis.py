"""What a failed soak reports about a breaker that did not close (pure logic: real
clients that never connect, their breakers driven by hand)."""

from __future__ import annotations

import time
from typing import Any

from resilience.clients.memcache import AsyncMemcache, Memcache
from resilience.soak.config import SoakConfig
from resilience.soak.run import _diagnosis, _Run
from resilience.soak.targets import Target
from resilience.soak.watch import CallStats


def _target() -> Target:
    opts: dict[str, Any] = {"environ": {}, "breaker_minimum_calls": 2}
    s, a = Memcache(["127.0.0.1:1"], **opts), AsyncMemcache(["127.0.0.1:1"], **opts)

    def scall(_t: float | None) -> object:
        raise AssertionError("no call in this test")

    async def acall(_t: float | None) -> object:
        raise AssertionError("no call in this test")

    return Target("memcached", 0.1, s, a, scall, acall, {})


def test_a_breaker_stuck_half_open_with_a_probe_out_is_named_in_the_diagnosis() -> None:
    target = _target()
    run = _Run(SoakConfig(seconds=60, seed=1, datastores=("memcached",)), log=lambda _: None)
    run.stats = {("memcached", mode): CallStats() for mode in ("sync", "async")}
    run.tail_breakers = {"memcached": target.breaker_snapshots()}
    run.fault_from = run.tail_from = 0.0
    run.record(target, "sync", 1.0, 0.0, 0.01, "CircuitOpenError")
    run.record(target, "sync", 1.1, 0.0, 0.01, "CircuitOpenError")
    run.record(target, "async", 1.2, 0.0, 0.01, "ok")

    breaker = target.sync_client.breaker("127.0.0.1:1")
    now = time.monotonic()
    for _ in range(2):  # two failures: open
        breaker.on_failure(breaker.acquire(now), now, 0.001)
    assert breaker.acquire(now + 600) is not None  # HALF_OPEN: a trial permit, kept

    diagnosis = _diagnosis(run, target)
    assert target.open_breakers() == ["sync 127.0.0.1:1 half_open"]
    stuck = diagnosis["breakers_at_end"]["sync 127.0.0.1:1"]
    assert stuck["state"] == "half_open" and stuck["probes_in_flight"] == 1
    assert stuck["changes_in_tail"] == 2  # CLOSED -> OPEN -> HALF_OPEN
    healthy = diagnosis["breakers_at_end"]["async 127.0.0.1:1"]
    assert healthy["state"] == "closed" and healthy["changes_in_tail"] == 0
    assert diagnosis["tail_outcomes"] == {"sync": {"CircuitOpenError": 2}, "async": {"ok": 1}}
    target.sync_client.close()
