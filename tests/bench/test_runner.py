"""The benchmark runner: hung calls are cut at the cap and woken; loops are bounded."""

from __future__ import annotations

import threading
import time

import pytest

from resilience.bench.runner import measure, outcome_name


class Hanging:
    """A subject whose call blocks until aborted (like a raw driver with no timeout)."""

    name = "hanging"

    def __init__(self) -> None:
        self.woken = threading.Event()
        self.aborted = 0

    def call(self) -> object:
        self.woken.wait(30)
        raise ConnectionResetError("woken by abort")

    def abort(self) -> None:
        self.aborted += 1
        self.woken.set()

    def breaker_open(self) -> bool:
        return False

    def close(self) -> None:
        self.woken.set()


class Tripping:
    """Fails fast; its 'breaker' opens after three calls, then calls cost nothing."""

    name = "tripping"

    def __init__(self) -> None:
        self.calls = 0

    def call(self) -> object:
        self.calls += 1
        raise TimeoutError("fail")

    def abort(self) -> None:
        pass

    def breaker_open(self) -> bool:
        return self.calls >= 3

    def close(self) -> None:
        pass


def test_a_hung_call_is_recorded_at_the_cap_then_woken_and_not_repeated() -> None:
    subject = Hanging()
    cleared: list[bool] = []
    before = threading.active_count()
    start = time.monotonic()
    m = measure(subject, calls=10, cap=0.2, time_limit=5.0, on_hang=lambda: cleared.append(True))
    assert time.monotonic() - start < 2.0
    assert m.outcomes == ["hang"] and m.durations == [0.2]
    assert subject.aborted == 1 and cleared == [True]
    time.sleep(0.05)
    assert threading.active_count() <= before


def test_a_call_that_abort_cannot_wake_is_abandoned_after_one_grace_period() -> None:
    class Deaf(Hanging):
        def abort(self) -> None:
            self.aborted += 1  # wakes nothing: only close() releases the call

    subject = Deaf()
    start = time.monotonic()
    try:
        m = measure(subject, calls=10, cap=0.2, time_limit=5.0)
        elapsed = time.monotonic() - start
    finally:
        subject.close()
    assert m.outcomes == ["hang"] and "abandoned" in m.note
    assert elapsed < 0.2 + 2.0 + 0.6  # the cap and one 2 s grace, not a second wait


def test_calls_stop_at_the_time_limit() -> None:
    class Slow(Tripping):
        def call(self) -> object:
            time.sleep(0.05)
            return b"v"

    m = measure(Slow(), calls=1000, cap=1.0, time_limit=0.3, open_calls=0)
    assert 3 <= len(m.durations) < 20 and "limit" in m.note
    assert set(m.outcomes) == {"ok"}


def test_open_breaker_cost_is_measured_only_when_the_breaker_is_open() -> None:
    m = measure(Tripping(), calls=5, cap=1.0, time_limit=5.0, open_calls=100)
    assert m.outcomes == ["TimeoutError"] * 5
    assert m.open_cost is not None and m.open_cost < 0.01


def test_outcome_names_distinguish_hits_misses_and_errors() -> None:
    assert outcome_name(None, b"v") == "ok"
    assert outcome_name(None, None) == "miss"
    assert outcome_name(KeyError("k")) == "KeyError"


def test_bad_bounds_are_refused() -> None:
    with pytest.raises(ValueError):
        measure(Tripping(), calls=0, cap=1.0, time_limit=1.0)
