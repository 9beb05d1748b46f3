"""Fault schedules: which fault, when, for how long; drawn from a seed, replayed exactly.

A :class:`FaultSchedule` is plain data: a list of :class:`FaultWindow` (start offset,
duration, fault name) within a total duration. :meth:`FaultSchedule.generate` draws it
from ``random.Random(seed)`` (never the global random), so the same seed and arguments
give the same schedule on any machine; ``to_json``/``from_json`` store it with a
benchmark's results.

A :class:`ScheduleRunner` plays a schedule against named faults (anything with
``apply()`` and ``remove()``; adapters below for a proxy toxic, a frozen process and a
firewall rule) in a background thread: it applies and removes each fault on time,
stops at the schedule's end (or at ``stop()``), and always removes whatever is still
applied. Its ``log`` records what it did and when, for assertions and plots.
"""

from __future__ import annotations

import json
import random
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from resilience.faults.proxy import FaultProxy
    from resilience.faults.toxics import Toxic

__all__ = [
    "CallbackFault",
    "Fault",
    "FaultSchedule",
    "FaultWindow",
    "RuleFault",
    "ScheduleRunner",
    "ToxicFault",
]


class Fault(Protocol):
    """Something a schedule can switch on and off."""

    def apply(self) -> None: ...
    def remove(self) -> None: ...


@dataclass(frozen=True)
class FaultWindow:
    """``fault`` is applied ``start`` s after the run begins, for ``duration`` s."""

    start: float
    duration: float
    fault: str

    @property
    def end(self) -> float:
        return self.start + self.duration


def _range(name: str, value: tuple[float, float]) -> tuple[float, float]:
    lo, hi = value
    if not 0 <= lo <= hi:
        raise ValueError(f"{name}={value!r}: expected (low, high) with 0 <= low <= high")
    return lo, hi


@dataclass(frozen=True)
class FaultSchedule:
    """A replayable list of non-overlapping fault windows within ``total`` seconds."""

    seed: int
    total: float
    windows: tuple[FaultWindow, ...]

    @classmethod
    def generate(
        cls,
        seed: int,
        faults: Sequence[str],
        total: float,
        *,
        gap: tuple[float, float] = (0.5, 2.0),
        duration: tuple[float, float] = (0.2, 1.0),
    ) -> FaultSchedule:
        """Draw a schedule: healthy gaps and fault windows alternate, each length
        uniform in its range, each fault chosen uniformly from ``faults``.

        Raises:
            ValueError: no faults, a non-positive total, or a bad range; the message
                names the argument.
        """
        if not faults:
            raise ValueError("faults: expected at least one fault name")
        if total <= 0:
            raise ValueError(f"total={total!r}: expected seconds > 0")
        gap, duration = _range("gap", gap), _range("duration", duration)
        if gap[1] + duration[1] <= 0:
            raise ValueError("gap and duration are both zero: the schedule would not advance")
        rng = random.Random(seed)
        windows: list[FaultWindow] = []
        t = rng.uniform(*gap)
        while t < total and len(windows) < 100_000:
            d = min(rng.uniform(*duration), total - t)
            windows.append(FaultWindow(round(t, 6), round(d, 6), rng.choice(list(faults))))
            t += d + rng.uniform(*gap)
        return cls(seed, total, tuple(windows))

    def active_at(self, t: float) -> list[str]:
        """Faults applied at ``t`` seconds into the run."""
        return [w.fault for w in self.windows if w.start <= t < w.end]

    def to_json(self) -> str:
        return json.dumps({"seed": self.seed, "total": self.total,
                           "windows": [asdict(w) for w in self.windows]})

    @classmethod
    def from_json(cls, text: str) -> FaultSchedule:
        data = json.loads(text)
        return cls(data["seed"], data["total"], tuple(FaultWindow(**w) for w in data["windows"]))


class CallbackFault:
    """A fault from two callables, e.g. ``CallbackFault(lambda: freeze(pid), lambda:
    thaw(pid))``."""

    def __init__(self, apply: Callable[[], object], remove: Callable[[], object]) -> None:
        self._apply, self._remove = apply, remove

    def apply(self) -> None:
        self._apply()

    def remove(self) -> None:
        self._remove()


class ToxicFault:
    """Add a toxic to a :class:`~resilience.faults.proxy.FaultProxy`; remove it after."""

    def __init__(self, proxy: FaultProxy, toxic: Toxic) -> None:
        self.proxy, self.toxic = proxy, toxic

    def apply(self) -> None:
        self.proxy.add(self.toxic)

    def remove(self) -> None:
        self.proxy.remove(self.toxic)


class RuleFault:
    """A firewall rule from a factory (``lambda: ns.firewall.drop(port)``), removed after."""

    def __init__(self, make: Callable[[], Any]) -> None:
        self.make = make
        self.rule: Any = None

    def apply(self) -> None:
        self.rule = self.make()

    def remove(self) -> None:
        if self.rule is not None:
            self.rule.remove()
            self.rule = None


class ScheduleRunner:
    """Play a schedule against named faults in a daemon thread.

    Args:
        schedule: what to do when.
        faults: fault name -> Fault; every name in the schedule must be here.
        clock: monotonic seconds (injected for tests).

    Raises:
        ValueError: the schedule names a fault missing from ``faults``.
    """

    def __init__(
        self,
        schedule: FaultSchedule,
        faults: Mapping[str, Fault],
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        missing = sorted({w.fault for w in schedule.windows} - set(faults))
        if missing:
            raise ValueError(f"schedule names faults with no implementation: {missing}")
        self.schedule, self.faults, self.clock = schedule, faults, clock
        self.log: list[tuple[float, str, str]] = []  # (offset s, "apply"/"remove", name)
        self.errors: list[tuple[str, BaseException]] = []
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.started = 0.0

    def start(self) -> ScheduleRunner:
        self.started = self.clock()
        self._thread = threading.Thread(target=self._run, name="fault-schedule", daemon=True)
        self._thread.start()
        return self

    def _do(self, action: str, name: str) -> None:
        fault = self.faults[name]
        try:
            fault.apply() if action == "apply" else fault.remove()
        except Exception as exc:  # keep playing: one broken fault must not stop the run
            self.errors.append((name, exc))
        self.log.append((self.clock() - self.started, action, name))

    def _wait_until(self, offset: float) -> bool:
        """Sleep until ``offset`` s into the run; False if stopped first."""
        while True:
            left = offset - (self.clock() - self.started)
            if left <= 0:
                return not self._stop.is_set()
            if self._stop.wait(min(left, 0.05)):
                return False

    def _run(self) -> None:
        applied: str | None = None
        try:
            for w in self.schedule.windows:
                if not self._wait_until(w.start):
                    return
                self._do("apply", w.fault)
                applied = w.fault
                if not self._wait_until(w.end):
                    return
                self._do("remove", w.fault)
                applied = None
            self._wait_until(self.schedule.total)
        finally:
            if applied is not None:
                self._do("remove", applied)

    def stop(self, timeout: float = 5.0) -> None:
        """Stop early (or wait for the end); every applied fault is removed."""
        self._stop.set()
        self.join(timeout)

    def join(self, timeout: float | None = None) -> bool:
        """Wait for the run to end (bounded by ``timeout``); True if it ended."""
        if self._thread is None:
            return True
        self._thread.join(self.schedule.total + 5 if timeout is None else timeout)
        return not self._thread.is_alive()

    def __enter__(self) -> ScheduleRunner:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
