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
