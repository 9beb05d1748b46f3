"""The CI soak: 60 s of seeded faults over memcached, ZooKeeper, NSQ and OpenSearch at
once, under sync and asyncio load, with no invariant violated.

Cassandra and Elasticsearch are left out: each JVM costs 5-60 s to start, and the suite's
budget allows one, OpenSearch, the quickest (docs/soak.md has the run over all six).
"""

from __future__ import annotations

from typing import Any

import pytest

from resilience.soak.config import SoakConfig
from resilience.soak.report import markdown
from resilience.testing._server_fixtures import require_driver

CI_DATASTORES = ("memcached", "zookeeper", "nsq", "opensearch")

pytestmark = [pytest.mark.servers(*CI_DATASTORES), pytest.mark.slow, pytest.mark.timeout(400)]


@pytest.fixture(scope="module")
def result() -> dict[str, Any]:
    require_driver("zookeeper", "kazoo")
    require_driver("opensearch", "opensearchpy")
    from resilience.soak.run import run_soak

    return run_soak(SoakConfig(seconds=60, seed=1312, datastores=CI_DATASTORES))


def test_no_invariant_is_violated(result: dict[str, Any]) -> None:
    assert result["ok"], markdown(result)
    assert result["violation_count"] == 0
    for ds in CI_DATASTORES:
        assert result["recovery"][ds]["met"] or not result["recovery"][ds]["enforced"], ds
    assert all(row["ok"] for row in result["resources"].values()), result["resources"]
    assert set(result["resources"]) == {"threads", "fds", "rss_mb"}


def test_the_faults_bit_and_the_load_ran(result: dict[str, Any]) -> None:
    """Not a vacuous pass: every schedule was played, every breaker opened at some
    point, and both modes made calls that succeeded and calls that failed fast."""
    for ds in CI_DATASTORES:
        sched = result["schedules"][ds]
        assert sched["windows"] >= 3 and sched["applied"] == sched["windows"], ds
        assert result["recovery"][ds]["open_share"] > 0, ds
        for mode in ("sync", "async"):
            outcomes = result["calls"][ds][mode]["outcomes"]
            assert outcomes.get("ok", 0) > 100, (ds, mode, outcomes)
            assert sum(outcomes.values()) > outcomes["ok"], (ds, mode, outcomes)
            phases = result["calls"][ds][mode]["by_phase"]
            assert sum(sum(p.values()) for p in phases.values()) == sum(outcomes.values())
            assert all(phases[p].get("ok", 0) > 0 for p in ("warm-up", "tail")), phases
    nsq = result["nsq"]
    assert nsq["acknowledged"] > 100 and nsq["lost"] == 0
    assert nsq["matched"] == nsq["acknowledged"]


def test_the_run_replays_from_its_seed(result: dict[str, Any]) -> None:
    again = SoakConfig(seconds=60, seed=1312, datastores=CI_DATASTORES)
    for ds in CI_DATASTORES:
        assert result["schedules"][ds]["fingerprint"] == again.fingerprint(ds)
        assert result["schedules"][ds]["windows"] == len(again.schedule(ds).windows)
    assert result["replay"] == again.replay_command()
    assert "--seed 1312" in result["replay"]
