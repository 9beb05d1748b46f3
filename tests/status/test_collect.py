"""collect(): every open client's breakers, with rates, window, open-until, retry budget
and bulkhead; closed clients vanish; policies appear when given; force() acts on them."""

from __future__ import annotations

import json
import time
from typing import Any

import pytest

from resilience import Policy
from resilience.clients.memcache import Memcache
from resilience.config import BreakerOptions, BulkheadOptions, RetryOptions
from resilience.errors import BackendUnavailableError, ResilienceError
from resilience.status import FORCE_ACTIONS, collect, force
from resilience.status.cli import format_table
from resilience.testing.clock import FakeClock

# Nothing listens on port 47 of loopback (refused at once); no other test uses it.
DEAD = "127.0.0.1:47"


def _entry(doc: dict[str, Any], service: str, endpoint: str
           ) -> tuple[dict[str, Any], dict[str, Any]]:
    for svc in doc["services"]:
        for b in svc["breakers"]:
            if svc["service"] == service and b["endpoint"] == endpoint:
                return svc, b
    raise AssertionError(f"no breaker {service} {endpoint} in {json.dumps(doc)[:500]}")


def test_a_new_client_is_listed_with_every_field_and_a_closed_one_is_gone() -> None:
    cache = Memcache([DEAD, "127.0.0.1:2"], environ={}, bulkhead_max_concurrent=7)
    try:
        doc = collect(refresh=1.5)
        json.dumps(doc)  # JSON-able as is
        assert doc["refresh"] == 1.5 and doc["forcing"] is False
        assert abs(doc["time"] - time.time()) < 60
        svc, b = _entry(doc, "memcache", DEAD)
        _entry(doc, "memcache", "127.0.0.1:2")
        assert svc["kind"] == "client"
        assert b["state"] == "closed" and b["calls"] == 0 and b["window_fill"] == 0.0
        assert b["open_until"] is None and b["retry_after"] == 0.0
        assert b["bulkhead"] == {"in_use": 0, "max_concurrent": 7}
        assert svc["retry_budget"]["refused"] == 0 and svc["retry_budget"]["balance"] > 0
    finally:
        cache.close()
    with pytest.raises(AssertionError):
        _entry(collect(), "memcache", DEAD)


def test_failures_show_as_rates_then_as_an_open_breaker_with_its_open_until() -> None:
    cache = Memcache([DEAD], environ={}, timeout=0.5, breaker_minimum_calls=4,
                     breaker_window_size=8, breaker_open_duration=30.0, breaker_jitter=0.0,
                     breaker_health_probe=False, retry_attempts=1)
    try:
        with pytest.raises(ResilienceError):
            cache.get("k")
        _, b = _entry(collect(), "memcache", DEAD)
        assert b["state"] == "closed" and b["calls"] == 1 and b["failures"] == 1
        assert b["failure_rate"] == 1.0 and b["window_fill"] == 1 / 8
        for _ in range(5):  # bounded: the fourth failure opens it
            with pytest.raises(ResilienceError):
                cache.get("k")
        _, b = _entry(collect(), "memcache", DEAD)
        assert b["state"] == "open"
        assert 20 < b["retry_after"] <= 30
        assert 20 < b["open_until"] - time.time() <= 30
    finally:
        cache.close()


def test_a_policy_given_explicitly_is_listed_and_forced_by_service_and_name() -> None:
    clock = FakeClock()
    policy = Policy("payments-status-test", clock=clock, idempotent=True,
                    breaker=BreakerOptions(minimum_calls=2, window_size=2),
                    retry=RetryOptions(attempts=2),
                    bulkhead=BulkheadOptions(max_concurrent=3))

    def down() -> None:
        raise BackendUnavailableError("refused")

    with pytest.raises(ResilienceError):
        policy.call(down)
    doc = collect([policy])
    svc, b = _entry(doc, "payments-status-test", policy.breaker.name)
    assert svc["kind"] == "policy" and b["failures"] == 2  # the call and its retry
    assert b["bulkhead"] == {"in_use": 0, "max_concurrent": 3}
    assert svc["retry_budget"]["balance"] >= 0
    assert force("payments-status-test", policy.breaker.name, "open", [policy]) == 1
    _, b = _entry(collect([policy]), "payments-status-test", policy.breaker.name)
    assert b["state"] == "forced_open"
    assert force("payments-status-test", policy.breaker.name, "reset", [policy]) == 1
    _, b = _entry(collect([policy]), "payments-status-test", policy.breaker.name)
    assert b["state"] == "closed" and b["calls"] == 0
    with pytest.raises(TypeError, match=r"policies\[1\]: expected a resilience.Policy, got str"):
        collect([policy, "payments"])


def test_force_touches_only_the_named_breaker_and_rejects_an_unknown_action() -> None:
    cache = Memcache([DEAD, "127.0.0.1:2"], environ={})
    try:
        assert force("memcache", DEAD, "closed") >= 1
        assert cache.breaker(DEAD).snapshot(time.monotonic())["state"] == "forced_closed"
        assert cache.breaker("127.0.0.1:2").snapshot(time.monotonic())["state"] == "closed"
        assert force("memcache", "127.0.0.1:9", "open") == 0
        assert force("nosuchservice", DEAD, "open") == 0
        with pytest.raises(ValueError, match=r"'shut'.*open, closed, reset"):
            force("memcache", DEAD, "shut")
        assert set(FORCE_ACTIONS) == {"open", "closed", "reset"}
    finally:
        cache.close()


def test_a_client_that_cannot_be_read_is_reported_and_the_others_still_shown() -> None:
    broken, healthy = Memcache([DEAD], environ={}), Memcache(["127.0.0.1:49"], environ={})
    try:
        broken._ops = None  # type: ignore[assignment]  # reading it now raises TypeError
        doc = collect()
        errors = [s for s in doc["services"] if s.get("error")]
        assert len(errors) == 1 and errors[0]["service"] == "memcache"
        assert errors[0]["error"].startswith("TypeError") and errors[0]["breakers"] == []
        _entry(doc, "memcache", "127.0.0.1:49")
        assert "ERROR" in format_table(doc)
    finally:
        broken._ops = []
        broken.close()
        healthy.close()
