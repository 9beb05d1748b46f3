"""The settings of one soak run, checked at construction, and its derived timeline and
fault schedules (a pure function of the settings: the same seed gives the same
schedules on any machine)."""

from __future__ import annotations

import hashlib
import zlib
from dataclasses import dataclass, field

from resilience.faults.schedule import FaultSchedule
from resilience.soak.targets import DATASTORES, FAULTS

__all__ = ["SoakConfig"]

MIN_SECONDS = 20.0


@dataclass(frozen=True)
class SoakConfig:
    """One soak run; see docs/soak.md for what each setting means.

    Attributes:
        seconds: length of the run (warm-up + faults + healthy tail), servers' start
            and the final checks not included.
        seed: the seed every datastore's fault schedule is drawn from.
        datastores: which datastores, a subset of :data:`~resilience.soak.targets.DATASTORES`.
        budget: the deadline of every call (seconds).
        slack: scheduling slack allowed on top of the deadline's 5 ms (seconds): a
            call must end within ``budget + 0.005 + slack``.
        recovery: seconds within which every breaker must be closed after the last heal.
        strict_recovery: also fail the run on a missed recovery of a client that has no
            background health probe (by default that is reported, not a failure).
        threads: sync load threads per datastore (plus one asyncio task each).
        pace: pause between two calls of one thread or task (seconds).
        gap, duration: ranges (seconds) of healthy gaps and fault windows.
        threads_limit, fds_limit, rss_limit_mb, rss_ratio: how much each resource may
            grow from the first to the last quarter of the run after warm-up.
    """

    seconds: float = 60.0
    seed: int = 1
    datastores: tuple[str, ...] = DATASTORES
    budget: float = 0.1
    slack: float = 0.045
    recovery: float = 1.0
    strict_recovery: bool = False
    threads: int = 2
    pace: float = 0.01
    gap: tuple[float, float] = (1.0, 4.0)
    duration: tuple[float, float] = (0.2, 1.5)
    threads_limit: int = 3
    fds_limit: int = 16
    rss_limit_mb: float = 24.0
    rss_ratio: float = 0.05
    faults: tuple[str, ...] = field(default=FAULTS)

    def __post_init__(self) -> None:
        if not self.seconds >= MIN_SECONDS:
            raise ValueError(f"seconds={self.seconds!r}: expected at least {MIN_SECONDS:g}"
                             " (warm-up, faults and a healthy tail must fit)")
        if not self.datastores:
            raise ValueError("datastores: expected at least one")
        unknown = [d for d in self.datastores if d not in DATASTORES]
        if unknown:
            raise ValueError(f"datastores: unknown {', '.join(unknown)}; "
                             f"choose from {', '.join(DATASTORES)}")
        if len(set(self.datastores)) != len(self.datastores):
            raise ValueError(f"datastores={self.datastores!r}: a datastore is named twice")
        bad_faults = [f for f in self.faults if f not in FAULTS]
        if not self.faults or bad_faults:
            raise ValueError(f"faults={self.faults!r}: expected names from {', '.join(FAULTS)}")
        for name in ("budget", "recovery", "pace"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name}={getattr(self, name)!r}: expected seconds > 0")
        if self.slack < 0:
            raise ValueError(f"slack={self.slack!r}: expected seconds >= 0")
        if not 1 <= self.threads <= 16:
            raise ValueError(f"threads={self.threads!r}: expected 1..16 per datastore")

    # ---- timeline ------------------------------------------------------------------

    @property
    def warmup(self) -> float:
        """Healthy load before the first fault (connections open, caches warm)."""
        return min(max(self.seconds * 0.15, 3.0), 60.0)

    @property
    def tail(self) -> float:
        """Healthy load after the last heal: the breakers' recovery is measured here."""
        return min(max(self.seconds * 0.15, 5.0 * self.recovery, 5.0), 120.0)

    @property
    def fault_phase(self) -> float:
        return self.seconds - self.warmup - self.tail

    @property
    def limit(self) -> float:
        """No call may take longer than this (seconds)."""
        return self.budget + 0.005 + self.slack

    # ---- schedules -----------------------------------------------------------------

    def schedule_seed(self, datastore: str) -> int:
        """The seed of ``datastore``'s schedule, derived from :attr:`seed` (stable across
        Python versions and machines: CRC-32, not ``hash``)."""
        return zlib.crc32(f"{self.seed}/{datastore}".encode())

    def schedule(self, datastore: str) -> FaultSchedule:
        """``datastore``'s fault schedule over the fault phase (offsets from its start)."""
        return FaultSchedule.generate(self.schedule_seed(datastore), list(self.faults),
                                      self.fault_phase, gap=self.gap, duration=self.duration)

    def fingerprint(self, datastore: str) -> str:
        """A short hash of ``datastore``'s schedule, to compare runs without storing it."""
        return hashlib.sha256(self.schedule(datastore).to_json().encode()).hexdigest()[:16]

    def position(self, datastore: str, offset: float) -> str:
        """Where ``offset`` seconds into the run falls in ``datastore``'s schedule."""
        t = offset - self.warmup
        if t < 0:
            return f"warm-up, {offset:.3f} s in, before the first fault"
        windows = self.schedule(datastore).windows
        for i, w in enumerate(windows):
            if w.start <= t < w.end:
                return f"t={t:.3f} s, in window #{i} {w.fault} [{w.start:.3f}, {w.end:.3f})"
            if t < w.start:
                return f"t={t:.3f} s, healthy gap before window #{i} {w.fault}"
        if t < self.fault_phase:
            return f"t={t:.3f} s, healthy gap after the last window #{len(windows) - 1}"
        return f"healthy tail, {t - self.fault_phase:.3f} s after the fault phase"

    def replay_command(self) -> str:
        """The command that replays this run (same schedules, same settings)."""
        parts = [f"resilience soak --seconds {self.seconds:g} --seed {self.seed}",
                 f"--datastores {','.join(self.datastores)}"]
        defaults = SoakConfig()
        for name, flag, scale in (("budget", "--budget-ms", 1000), ("slack", "--slack-ms", 1000),
                                  ("recovery", "--recovery", 1), ("threads", "--threads", 1),
                                  ("pace", "--pace-ms", 1000)):
            value = getattr(self, name)
            if value != getattr(defaults, name):
                parts.append(f"{flag} {value * scale:g}")
        if self.faults != defaults.faults:
            parts.append(f"--faults {','.join(self.faults)}")
        return " ".join(parts)
