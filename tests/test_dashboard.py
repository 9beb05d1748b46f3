"""examples/grafana-dashboard.json is valid and asks only for metrics the exporter makes."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry

from resilience.config import BreakerOptions, BulkheadOptions, RetryOptions
from resilience.core.metrics import PrometheusListener
from resilience.core.policy import Policy
from resilience.errors import BackendUnavailableError, ResilienceError
from resilience.testing.clock import FakeClock

DASHBOARD = Path(__file__).resolve().parent.parent / "examples" / "grafana-dashboard.json"


def exported_names() -> set[str]:
    """The sample names a scrape really holds after calls of every outcome."""
    registry = CollectorRegistry()
    clock = FakeClock()
    policy = Policy("cache", operation="get", idempotent=True, clock=clock,
                    breaker=BreakerOptions(minimum_calls=2, window_size=2),
                    retry=RetryOptions(attempts=2, budget_ratio=0.0, budget_min_per_second=0.0),
                    bulkhead=BulkheadOptions(max_concurrent=1))
    PrometheusListener(registry).instrument(policy)

    def down() -> None:
        raise BackendUnavailableError("refused")

    policy.call(lambda: 1)
    for fn in (lambda: policy.call(lambda: 1), down, down, down):  # bulkhead full, ...
        with pytest.raises(ResilienceError):
            policy.call(fn)
    return {s.name for family in registry.collect() for s in family.samples}


def test_the_dashboard_is_valid_json_using_only_exported_metrics() -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    exprs = [t["expr"] for p in dashboard["panels"] for t in p["targets"]]
    exprs += [v["query"] for v in dashboard["templating"]["list"] if v["type"] == "query"]
    used = {name for e in exprs for name in re.findall(r"\bresilience_[a-z_]+", e)}
    assert used, "no resilience metric in the dashboard"
    missing = {n for n in used if n not in exported_names()}
    assert not missing, f"the dashboard asks for metrics nobody exports: {missing}"
    ids = [p["id"] for p in dashboard["panels"]]
    assert len(ids) == len(set(ids))
