"""Stateful property test: the breaker against a tiny reference model (count window).

Hypothesis drives random sequences of acquire / success / failure / slow outcome /
release / time advance / manual actions on both; after every step the state, the
admission decisions, the retry_after, the transitions heard by a listener and (while
CLOSED) the window counts must agree.

Calls also go through the real pipeline (`call` and `acall`, on a fake clock, with
attempts that succeed or fail, fast or slow), with and without an event listener: the
pipeline inlines the breaker's CLOSED fast paths unless someone listens (a contract
written in resilience/core/breaker.py), so a change to the breaker that the inlined
copy does not follow, or the reverse, makes the two sides disagree with the one model.
"""

from __future__ import annotations

import random
from collections.abc import Coroutine
from dataclasses import dataclass, field
from typing import Any

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from resilience.config import BreakerOptions
from resilience.core.breaker import BreakerState, CircuitBreaker
from resilience.core.events import EventBus
from resilience.core.pipeline import Operation, acall, call
from resilience.errors import BackendUnavailableError, CircuitOpenError
from resilience.testing.clock import FakeClock


@dataclass
class Model:
    """The breaker's rules written as plainly as possible (a list for the window)."""

    o: BreakerOptions
    rng: random.Random
    state: str = "closed"
    gen: int = 0
    window: list[tuple[bool, bool]] = field(default_factory=list)  # (failed, slow)
    interval: float = 0.0
    open_until: float = 0.0
    probes_out: set[int] = field(default_factory=set)
    probe_ok: int = 0
    probe_slow: int = 0
    next_id: int = 0
    heard: list[tuple[str, str]] = field(default_factory=list)

    def enter(self, state: str) -> None:
        if state != self.state:
            self.heard.append((self.state, state))
        self.state, self.gen = state, self.gen + 1
        self.probes_out, self.probe_ok, self.probe_slow = set(), 0, 0
        if state == "closed":
            self.window, self.interval = [], self.o.open_duration

    def open(self, now: float, grow: bool) -> None:
        if grow:
            self.interval = min(self.interval * self.o.open_backoff, self.o.max_open_duration)
        jitter = self.interval * self.o.jitter * self.rng.random() if self.o.jitter else 0.0
        self.open_until = now + self.interval + jitter
        self.enter("open")

    def tick(self, now: float) -> None:
        if self.state == "open" and now >= self.open_until:
            self.enter("half_open")

    def acquire(self, now: float) -> tuple[str, int, int] | None:
        self.tick(now)
        if self.state in ("closed", "forced_closed", "disabled"):
            return (self.state, self.gen, -1)
        if (
            self.state == "half_open"
            and len(self.probes_out) + self.probe_ok < self.o.half_open_probes
        ):
            self.next_id += 1
            self.probes_out.add(self.next_id)
            return ("probe", self.gen, self.next_id)
        return None

    def outcome(self, token: tuple[str, int, int], now: float, failed: bool, slow: bool) -> None:
        kind, gen, pid = token
        if gen != self.gen:
            return
        if kind == "closed":
            self.window = [*self.window, (failed, slow)][-self.o.window_size :]
            n = len(self.window)
            fails = sum(f for f, _ in self.window)
            slows = sum(s for _, s in self.window)
            if (
                (failed or slow)
                and n >= min(self.o.minimum_calls, self.o.window_size)
                and (fails / n >= self.o.failure_rate or slows / n >= self.o.slow_call_rate)
            ):
                self.open(now, grow=False)
        elif kind == "probe" and pid in self.probes_out:
            self.probes_out.remove(pid)
            if failed:
                return self.open(now, grow=True)
            self.probe_ok += 1
            self.probe_slow += slow
            if self.probe_ok == self.o.half_open_probes:
                n = self.o.half_open_probes
                if self.probe_slow / n >= self.o.slow_call_rate:
                    self.open(now, grow=True)
                else:
                    self.enter("closed")

    def release(self, token: tuple[str, int, int]) -> None:
        if token[0] == "probe" and token[1] == self.gen:
            self.probes_out.discard(token[2])


def drive(coroutine: Coroutine[Any, Any, Any]) -> Any:
    # acall with no bulkhead, no retry and an attempt that never suspends completes on
    # its first step: no event loop needed, so hypothesis can run thousands of them.
    try:
        coroutine.send(None)
    except StopIteration as done:
        return done.value
    raise AssertionError("acall suspended")


class BreakerMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.clock = FakeClock(100.0)
        self.calls: list[tuple[object, tuple[str, int, int]]] = []
        self.heard: list[tuple[str, str]] = []

    @initialize(
        window_size=st.integers(1, 8),
        minimum_calls=st.integers(1, 10),
        failure_rate=st.sampled_from([0.3, 0.5, 1.0]),
        slow_call_rate=st.sampled_from([0.3, 0.5, 1.0]),
        half_open_probes=st.integers(1, 3),
        jitter=st.sampled_from([0.0, 0.5]),
        seed=st.integers(0, 1000),
    )
    def setup(self, seed: int, **kw: Any) -> None:
        o = BreakerOptions(
            open_duration=1.0,
            max_open_duration=5.0,
            open_backoff=2.0,
            slow_call_duration=1.0,
            **kw,
        )
        self.b = CircuitBreaker(o, name="m", rng=random.Random(seed))
        self.b.add_listener(lambda _b, old, new, _n: self.heard.append((old.value, new.value)))
        self.m = Model(o, random.Random(seed), interval=o.open_duration)
        self.quiet = Operation("get", timeout=10.0, clock=self.clock)
        observed = EventBus()
        observed.add_listener(lambda _event: None)
        self.observed = Operation("get", timeout=10.0, clock=self.clock, events=observed)

    @property
    def now(self) -> float:
        return self.clock.monotonic()

    @rule()
    def acquire(self) -> None:
        permit, token = self.b.acquire(self.now), self.m.acquire(self.now)
        assert (permit is None) == (token is None), (self.m.state, token)
        if permit is not None and token is not None:
            self.calls.append((permit, token))

    @precondition(lambda self: self.calls)
    @rule(i=st.integers(0, 100), failed=st.booleans(), slow=st.booleans())
    def finish(self, i: int, failed: bool, slow: bool) -> None:
        permit, token = self.calls.pop(i % len(self.calls))
        duration = 1.0 if slow else 0.0  # exactly slow_call_duration counts as slow
        (self.b.on_failure if failed else self.b.on_success)(permit, self.now, duration)
        self.m.outcome(token, self.now, failed, slow)

    @precondition(lambda self: self.calls)
    @rule(i=st.integers(0, 100))
    def finish_fast_success(self, i: int) -> None:
        # The commonest outcome gets its own rule: windows then stay closed long enough
        # to fill, wrap and evict old failures.
        self.finish(i, failed=False, slow=False)

    @precondition(lambda self: self.calls)
    @rule(i=st.integers(0, 100))
    def release(self, i: int) -> None:
        permit, token = self.calls.pop(i % len(self.calls))
        self.b.release(permit)
        self.m.release(token)

    @rule(
        failed=st.booleans(),
        slow=st.booleans(),
        listened=st.booleans(),
        asynchronous=st.booleans(),
    )
    def through_the_pipeline(
        self, failed: bool, slow: bool, listened: bool, asynchronous: bool
    ) -> None:
        token = self.m.acquire(self.now)
        ran: list[float] = []

        def attempt(_remaining: float) -> str:
            ran.append(self.now)
            self.clock.advance(1.0 if slow else 0.0)  # exactly slow_call_duration is slow
            if failed:
                raise BackendUnavailableError("refused")
            return "v"

        async def aattempt(remaining: float) -> str:
            return attempt(remaining)

        op = self.observed if listened else self.quiet
        try:
            if asynchronous:
                result = drive(acall(op, self.b, aattempt))
            else:
                result = call(op, self.b, attempt)
        except CircuitOpenError:
            assert token is None and not ran, (self.m.state, token)
            return
        except BackendUnavailableError:
            assert failed
        else:
            assert not failed and result == "v"
        assert token is not None and len(ran) == 1, (self.m.state, token)
        self.m.outcome(token, self.now, failed, slow)

    @rule(dt=st.sampled_from([0.0, 0.25, 0.5, 1.0, 2.0, 6.0]))
    def advance(self, dt: float) -> None:
        self.clock.advance(dt)

    @rule(action=st.sampled_from(["force_open", "force_closed", "disable", "reset"]))
    def manual(self, action: str) -> None:
        getattr(self.b, action)(self.now)
        target = {"force_open": "forced_open", "force_closed": "forced_closed"}.get(action)
        if action == "reset":
            self.m.interval = self.m.o.open_duration
            self.m.enter("closed")
        else:
            new = target or "disabled"
            if self.m.state != new:
                self.m.enter(new)

    @invariant()
    def agrees_with_the_model(self) -> None:
        self.m.tick(self.now)
        assert self.b.state(self.now) is BreakerState(self.m.state)
        assert self.heard == self.m.heard
        expect_retry = max(0.0, self.m.open_until - self.now) if self.m.state == "open" else 0.0
        assert abs(self.b.retry_after(self.now) - expect_retry) < 1e-9
        if self.m.state == "closed":
            snap = self.b.snapshot(self.now)
            w = self.m.window
            assert (snap["calls"], snap["failures"], snap["slow_calls"]) == (
                len(w),
                sum(f for f, _ in w),
                sum(s for _, s in w),
            )


BreakerMachine.TestCase.settings = settings(
    max_examples=300,
    stateful_step_count=60,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
TestBreakerAgainstModel = BreakerMachine.TestCase
