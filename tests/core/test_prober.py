"""The health-probe transition and the prober's schedule: pure logic, time by hand.

The runners against a real memcached are in tests/clients/memcache/test_health_probe.py.
"""

from __future__ import annotations

import random
import threading
import time

import pytest

from resilience.config import BreakerOptions
from resilience.core.breaker import BreakerState, CircuitBreaker
from resilience.core.prober import ProbePlan, Target, ThreadProber

S = BreakerState
OPTS = BreakerOptions(window_size=2, minimum_calls=2, open_duration=1.0,
                      max_open_duration=8.0, jitter=0.0)


def _trip(b: CircuitBreaker, now: float) -> None:
    for _ in range(2):
        p = b.acquire(now)
        if p is not None:
            b.on_failure(p, now, 0.0)


def _grown(now: float = 0.0) -> CircuitBreaker:
    # Opened, then three failed user probes: the interval grew 1 -> 2 -> 4 -> 8.
    b = CircuitBreaker(OPTS, name="n")
    _trip(b, now)
    for _ in range(3):
        now += b.snapshot(now)["open_interval"]
        _trip(b, now)
    assert b.snapshot(now)["open_interval"] == 8.0
    return b


def test_probe_succeeded_half_opens_at_once_and_resets_the_growth() -> None:
    b = _grown()
    changes: list[tuple[str, str]] = []
    b.add_listener(lambda _b, old, new, _now: changes.append((old.value, new.value)))
    assert b.state(7.5) is S.OPEN  # the grown interval has 8 s to run
    assert b.probe_succeeded(7.5)
    assert b.state(7.5) is S.HALF_OPEN and changes == [("open", "half_open")]
    _trip(b, 7.5)  # the trial user call fails: re-opens for 1 x 2, not 8 x 2 (capped 8)
    assert b.state(7.5) is S.OPEN
    assert b.snapshot(7.5)["open_interval"] == 2.0


def test_probe_succeeded_is_ignored_unless_open() -> None:
    b = CircuitBreaker(OPTS, name="n")
    assert not b.probe_succeeded(0.0)
    assert b.state(0.0) is S.CLOSED
    b.force_open(0.0)
    assert not b.probe_succeeded(0.0)
    assert b.state(0.0) is S.FORCED_OPEN


def test_plan_paces_with_jitter_and_drops_settled_targets() -> None:
    b = _grown()
    plan = ProbePlan(random.Random(1))
    t = Target(b, lambda _timeout: None, interval=1.0, timeout=0.1, now=lambda: 0.0)
    plan.add(t, 100.0)
    plan.add(Target(b, lambda _timeout: None, 1.0, 0.1), 100.0)  # same breaker, owner
    assert len(plan.targets) == 1
    wake = plan.next_wake()
    assert wake is not None and 100.75 <= wake <= 101.25
    assert plan.take_due(100.5) == []
    assert plan.take_due(wake) == [t]
    assert plan.take_due(wake + 5) == []  # in flight: not handed out twice
    plan.done(t, False, 102.0)  # failed, breaker still open: paced again
    wake = plan.next_wake()
    assert wake is not None and 102.75 <= wake <= 103.25
    plan.done(t, True, 103.0)
    assert plan.next_wake() is None
    plan.add(t, 0.0)
    plan.forget(None)
    assert plan.targets == []


def test_a_breaker_reopened_while_its_probe_ran_stays_watched() -> None:
    # The probe began while OPEN; a user trial call half-opened the breaker and failed
    # (OPEN again, watch() again) before the probe ended: the probe's end saw HALF_OPEN
    # and says settled, but the breaker is open and must still be probed.
    b = _grown()
    plan = ProbePlan(random.Random(1))
    t = Target(b, lambda _timeout: None, interval=1.0, timeout=0.1)
    plan.add(t, 0.0)
    assert plan.take_due(2.0) == [t]
    plan.add(Target(b, lambda _timeout: None, 1.0, 0.1), 2.05)  # re-opened meanwhile
    plan.done(t, True, 2.1)
    assert plan.targets == [t]
    wake = plan.next_wake()
    assert wake is not None and 2.85 <= wake <= 3.35
    assert plan.take_due(wake) == [t]
    plan.done(t, True, 4.0)  # no re-watch this time: settled means settled
    assert plan.targets == []


def test_thread_prober_half_opens_then_its_thread_ends() -> None:
    b = _grown(time.monotonic())
    calls: list[float] = []

    def probe(timeout: float) -> None:
        calls.append(timeout)
        if len(calls) < 2:
            raise OSError("still down")

    prober = ThreadProber(random.Random(2))
    prober.watch(Target(b, probe, interval=0.02, timeout=0.05))
    deadline = time.monotonic() + 5.0
    while (prober.running or b.state(time.monotonic()) is S.OPEN) \
            and time.monotonic() < deadline:
        time.sleep(0.01)
    assert b.state(time.monotonic()) is S.HALF_OPEN
    assert calls == [0.05, 0.05]
    assert not prober.running
    assert all(t.is_alive() is False for t in threading.enumerate()
               if t is prober._thread)


def test_watch_never_waits_for_the_prober_thread_to_start(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """The breaker opens inside a call that just failed, often at its deadline: starting
    the thread must not add to it. Thread.start() is held here for up to 5 s (as a
    loaded machine holds it for tens of milliseconds); watch() returns at once."""
    gate = threading.Event()
    real_start = threading.Thread.start

    def held_start(self: threading.Thread) -> None:
        if self.name == "resilience-prober":
            gate.wait(5.0)
        real_start(self)

    monkeypatch.setattr(threading.Thread, "start", held_start)
    b = _grown(time.monotonic())
    prober = ThreadProber(random.Random(2))
    began = time.monotonic()
    prober.watch(Target(b, lambda _timeout: None, interval=0.02, timeout=0.05))
    returned = time.monotonic() - began
    assert prober.running and b.state(time.monotonic()) is S.OPEN
    gate.set()
    deadline = time.monotonic() + 5.0
    while prober.running and time.monotonic() < deadline:
        time.sleep(0.01)
    assert returned < 1.0, f"watch() waited {returned:.2f} s for the thread to start"
    assert b.state(time.monotonic()) is S.HALF_OPEN and not prober.running


def test_a_fork_child_gets_its_own_prober_thread() -> None:
    import os

    from resilience.core.prober import SHARED

    b = _grown(time.monotonic())
    owner = object()

    def down(_timeout: float) -> None:
        raise OSError("down")

    SHARED.watch(Target(b, down, interval=0.05, timeout=0.01, owner=owner))
    try:
        assert SHARED.running
        parent_thread = SHARED._thread
        pid = os.fork()
        if pid == 0:  # the child: a thread of its own, still probing, and it stops
            code = 0
            try:
                if not SHARED.running or SHARED._thread is parent_thread:
                    code = 1
                SHARED.forget(owner)
                deadline = time.monotonic() + 2.0
                while SHARED.running and time.monotonic() < deadline:
                    time.sleep(0.01)
                if SHARED.running:
                    code = 2
            finally:
                os._exit(code)
        _, status = os.waitpid(pid, 0)
        assert os.waitstatus_to_exitcode(status) == 0
    finally:
        SHARED.forget(owner)
