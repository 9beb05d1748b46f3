"""Event bus, breaker state changes as events, and the logging adapter."""

from __future__ import annotations

import logging

import pytest

from resilience.config import BreakerOptions
from resilience.core.breaker import CircuitBreaker
from resilience.core.events import Event, EventBus, LoggingListener
from resilience.errors import BackendTimeoutError


def event(kind: str = "failure", **kw: object) -> Event:
    return Event(kind, "memcache", "get", "10.0.0.1:11211", **kw)  # type: ignore[arg-type]


def test_listeners_get_events_until_they_unsubscribe() -> None:
    bus = EventBus()
    seen: list[str] = []
    stop = bus.add_listener(lambda e: seen.append(e.kind))
    bus.emit("retry", "s", "op", "ep")
    stop()
    bus.emit("retry", "s", "op", "ep")
    assert seen == ["retry"] and bus.listeners == ()


def test_a_broken_listener_does_not_stop_the_others(caplog: pytest.LogCaptureFixture) -> None:
    bus = EventBus()
    seen: list[str] = []

    def broken(_e: Event) -> None:
        raise RuntimeError("listener bug")

    bus.add_listener(broken)
    bus.add_listener(lambda e: seen.append(e.kind))
    bus.emit("failure", "s", "op", "ep")
    assert seen == ["failure"]
    assert "listener" in caplog.text


def test_a_listener_must_be_callable() -> None:
    with pytest.raises(TypeError, match="callable"):
        EventBus().add_listener("not a function")  # type: ignore[arg-type]


def test_breaker_state_changes_become_events() -> None:
    bus = EventBus()
    seen: list[Event] = []
    bus.add_listener(seen.append)
    breaker = CircuitBreaker(BreakerOptions(), name="node-a")
    bus.watch_breaker(breaker, "memcache", "get")
    breaker.force_open(10.0)
    assert [(e.kind, e.endpoint, e.old_state, e.new_state) for e in seen] == [
        ("state_change", "node-a", "closed", "forced_open")
    ]


def test_logging_listener_logs_one_structured_line(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="resilience.events")
    err = BackendTimeoutError("read timed out", service="memcache")
    LoggingListener()(event("failure", error=err, elapsed=0.0123))
    (record,) = caplog.records
    assert record.levelno == logging.WARNING
    assert "memcache get on 10.0.0.1:11211" in record.getMessage()
    assert record.resilience_event == "failure"  # type: ignore[attr-defined]
    assert record.resilience_error == "BackendTimeoutError"  # type: ignore[attr-defined]
    assert record.resilience_elapsed_ms == 12.3  # type: ignore[attr-defined]


def test_logging_listener_never_logs_a_foreign_exception_message(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG, logger="resilience.events")
    LoggingListener()(event("failure", error=ValueError("password=hunter2")))
    assert "hunter2" not in caplog.text
    assert "ValueError" in caplog.text


def test_logging_listener_skips_work_below_the_logger_level(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.ERROR, logger="resilience.events")
    LoggingListener()(event("retry"))
    assert caplog.records == []


def test_logging_listener_one_line_per_state_change_and_per_rejected_burst(
    caplog: pytest.LogCaptureFixture,
) -> None:
    from resilience.testing.clock import FakeClock

    caplog.set_level(logging.INFO, logger="resilience.events")
    clock = FakeClock()
    log = LoggingListener(burst_interval=10.0, clock=clock.monotonic)
    log(event("state_change", old_state="closed", new_state="open"))
    for _ in range(500):  # a dead node rejecting every call for 9.9 s
        log(event("rejected", reason="circuit_open"))
        clock.advance(0.0198)
    log(event("state_change", old_state="open", new_state="half_open"))
    log(event("state_change", old_state="half_open", new_state="open"))
    lines = [(r.resilience_event, r.resilience_suppressed)  # type: ignore[attr-defined]
             for r in caplog.records]
    assert lines == [("state_change", 0), ("rejected", 0), ("state_change", 0),
                     ("state_change", 0)]
    clock.advance(0.2)  # the burst interval is over: the next rejection logs the count
    log(event("rejected", reason="circuit_open"))
    last = caplog.records[-1]
    assert last.resilience_suppressed == 499  # type: ignore[attr-defined]
    assert "(+499 more in 10 s)" in last.getMessage()
    log(event("rejected", reason="bulkhead_full"))  # another kind of burst: its own line
    assert caplog.records[-1].resilience_reason == "bulkhead_full"  # type: ignore[attr-defined]
    assert len(caplog.records) == 6
