"""Run a soak: seeded fault schedules over every datastore at once, under sync and
asyncio load, with the invariants of docs/soak.md checked while it runs.

:func:`run_soak` starts the servers (their start is not counted in ``seconds``), warms
every client, then runs ``seconds`` of load: a healthy warm-up, the fault phase (one
:class:`~resilience.faults.schedule.ScheduleRunner` per datastore, all at once), and a
healthy tail in which the breakers must close. It returns a JSON-ready dict; a
violation carries the seed and the schedule position to replay it.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import tempfile
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Any

from resilience.errors import ResilienceError
from resilience.faults.schedule import ScheduleRunner
from resilience.soak.config import SoakConfig
from resilience.soak.targets import Target, open_target
from resilience.soak.watch import (
    BreakerTimeline,
    CallStats,
    LagProbe,
    ResourceSampler,
    Violation,
    flat,
)

__all__ = ["run_soak"]

WARM_TIMEOUT = 90.0  # seconds a client may take to answer its first call (a JVM warming)
MAX_VIOLATIONS = 200  # examples kept; the count goes on


class _Run:
    """The shared state of one run: clock, stop flag, stats, violations."""

    def __init__(self, config: SoakConfig, log: Callable[[str], None]) -> None:
        self.config, self.log = config, log
        self.lag = LagProbe()
        self.stop = threading.Event()
        self.start = time.monotonic()
        self.stats: dict[tuple[str, str], CallStats] = {}
        self.violations: list[Violation] = []
        # Calls past the limit, judged a little later: the stall they lived through may
        # be recorded by the probe only after the call itself was (both wake together).
        self.suspects: deque[tuple[Target, str, float, float, float, str]] = deque(
            maxlen=100_000)
        self.violation_count = 0
        # Outcomes per phase (by when the call began), and the breakers as the tail
        # began: healthy warm-up against healthy tail tells a slow machine from a slow
        # recovery (docs/soak.md, invariant 3).
        self.fault_from = self.tail_from = float("inf")
        self.phase_outcomes: dict[tuple[str, str, str], dict[str, int]] = {}
        self.tail_breakers: dict[str, dict[str, dict[str, Any]]] = {}
        self._lock = threading.Lock()

    def offset(self) -> float:
        return time.monotonic() - self.start

    def violate(self, invariant: str, datastore: str, offset: float, detail: str) -> None:
        v = Violation(invariant, datastore, round(offset, 3), detail,
                      self.config.position(datastore, offset) if datastore else "-")
        with self._lock:
            self.violation_count += 1
            if len(self.violations) < MAX_VIOLATIONS:
                self.violations.append(v)
                self.log(f"VIOLATION {v.line()}\n  replay: {self.config.replay_command()}")

    def record(self, target: Target, mode: str, began: float, t0: float, t1: float,
               outcome: str) -> None:
        """Count one call of ``t1 - t0`` seconds (``perf_counter``) that began ``began``
        seconds into the run; one past the limit is judged later (:meth:`judge`)."""
        self.stats[(target.name, mode)].record(outcome, t1 - t0)
        phase = ("warm-up" if began < self.fault_from else
                 "faults" if began < self.tail_from else "tail")
        with self._lock:
            counts = self.phase_outcomes.setdefault((target.name, mode, phase), {})
            counts[outcome] = counts.get(outcome, 0) + 1
        if t1 - t0 > self.config.limit:
            self.suspects.append((target, mode, began, t0, t1, outcome))
        if outcome.startswith("unexpected:"):
            self.violate("error-contract", target.name, began,
                         f"{mode} call raised {outcome[11:]}, not a ResilienceError")

    def judge(self, before: float = float("inf")) -> None:
        """Judge the calls past the limit that ended before ``before`` (``perf_counter``):
        a violation, unless the lag probe saw the machine stall during the call about
        as long as the overrun (:meth:`LagProbe.explains`; then counted as
        ``past_limit_in_stall``: the machine's delay, not the client's)."""
        while self.suspects and self.suspects[0][4] < before:
            target, mode, began, t0, t1, outcome = self.suspects.popleft()
            elapsed = t1 - t0
            stall = self.lag.stall_during(t0, t1)
            excused = self.lag.explains(stall, elapsed - self.config.limit)
            self.stats[(target.name, mode)].judged(excused)
            if not excused:
                self.violate("deadline", target.name, began,
                             f"{mode} call took {elapsed * 1000:.1f} ms > limit "
                             f"{self.config.limit * 1000:.0f} ms ({outcome}; longest stall "
                             f"seen meanwhile {stall * 1000:.1f} ms)")


def _outcome(exc: BaseException | None) -> str:
    if exc is None:
        return "ok"
    name = type(exc).__name__
    return name if isinstance(exc, ResilienceError) else f"unexpected:{name}"


def _sync_load(run: _Run, target: Target) -> None:
    while not run.stop.is_set():
        began = run.offset()
        t0 = time.perf_counter()
        error: BaseException | None = None
        try:
            target.sync_call(None)
        except Exception as exc:  # counted: every outcome is data
            error = exc
        run.record(target, "sync", began, t0, time.perf_counter(), _outcome(error))
        run.stop.wait(run.config.pace)


async def _async_load(run: _Run, target: Target) -> None:
    while not run.stop.is_set():
        began = run.offset()
        t0 = time.perf_counter()
        error: BaseException | None = None
        try:
            await target.async_call(None)
        except Exception as exc:  # counted: every outcome is data
            error = exc
        run.record(target, "async", began, t0, time.perf_counter(), _outcome(error))
        await asyncio.sleep(run.config.pace)


def _warm_sync(target: Target) -> None:
    """Call until one call succeeds (bounded): connections open, the JVM answers."""
    give_up = time.monotonic() + WARM_TIMEOUT
    while True:
        try:
            target.sync_call(5.0)
            return
        except ResilienceError:
            if time.monotonic() > give_up:
                raise
            time.sleep(0.2)


async def _warm_async(target: Target) -> None:
    give_up = time.monotonic() + WARM_TIMEOUT
    while True:
        try:
            await target.async_call(5.0)
            return
        except ResilienceError:
            if time.monotonic() > give_up:
                raise
            await asyncio.sleep(0.2)


class _Loop:
    """An asyncio loop on its own thread, for the async clients and their tasks."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="soak-loop",
                                       daemon=True)
        self.thread.start()

    def run(self, coro: Any, timeout: float) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5.0)
        if not self.thread.is_alive():
            self.loop.close()


def _monitor(run: _Run, targets: list[Target], sampler: ResourceSampler,
             timelines: dict[str, BreakerTimeline]) -> None:
    """Every 20 ms: note whether each datastore's breakers are all closed; every
    sampler period: sample threads, fds and memory."""
    next_sample = 0.0
    while not run.stop.wait(0.02):
        run.judge(time.perf_counter() - 0.5)
        now = run.offset()
        phase = "warm-up" if now < run.fault_from else "faults" if now < run.tail_from else "tail"
        for t in targets:
            timelines[t.name].sample(now, t.breakers_closed(), phase)
        if now >= next_sample:
            sampler.sample()
            next_sample = now + sampler.period


def run_soak(config: SoakConfig, *, log: Callable[[str], None] = print,
             work_dir: str | None = None) -> dict[str, Any]:
    """Run one soak (see the module docstring) and return its result."""
    own_dir = work_dir is None
    base = tempfile.mkdtemp(prefix="resilience-soak-") if work_dir is None else work_dir
    targets: list[Target] = []
    loop = _Loop()
    try:
        for name in config.datastores:
            log(f"starting {name} ...")
            targets.append(open_target(name, base, config.budget))
        for t in targets:
            _warm_sync(t)
            loop.run(_warm_async(t), WARM_TIMEOUT + 10)
        log(f"soak: {config.seconds:g} s, seed {config.seed}, "
            f"{', '.join(config.datastores)}")
        return _soak(config, targets, loop, log)
    finally:
        for t in targets:
            with contextlib.suppress(Exception):
                loop.run(t.async_client.aclose(), 10.0)
        loop.close()
        for t in targets:
            t.close()
        if own_dir:
            shutil.rmtree(base, ignore_errors=True)


def _soak(config: SoakConfig, targets: list[Target], loop: _Loop,
          log: Callable[[str], None]) -> dict[str, Any]:
    run = _Run(config, log)
    for t in targets:
        run.stats[(t.name, "sync")] = CallStats()
        run.stats[(t.name, "async")] = CallStats()
    lag = run.lag.start()
    sampler = ResourceSampler(start=run.start)
    timelines = {t.name: BreakerTimeline() for t in targets}
    threads = [threading.Thread(target=_sync_load, args=(run, t), name=f"soak-{t.name}-{i}",
                                daemon=True)
               for t in targets for i in range(config.threads)]
    threads.append(threading.Thread(target=_monitor, name="soak-monitor", daemon=True,
                                    args=(run, targets, sampler, timelines)))
    tasks = [asyncio.run_coroutine_threadsafe(_async_load(run, t), loop.loop) for t in targets]
    tasks.append(asyncio.run_coroutine_threadsafe(lag.aprobe(), loop.loop))
    for th in threads:
        th.start()
    runners: dict[str, ScheduleRunner] = {}
    try:
        run.stop.wait(config.warmup)
        fault_start = run.fault_from = run.offset()
        for t in targets:
            faults = {name: t.faults[name] for name in config.faults}
            runners[t.name] = ScheduleRunner(config.schedule(t.name), faults).start()
        log(f"faults from {fault_start:.1f} s for {config.fault_phase:.1f} s")
        for r in runners.values():
            r.join(config.fault_phase + 30.0)
        run.tail_breakers = {t.name: t.breaker_snapshots() for t in targets}
        run.tail_from = run.offset()
        run.stop.wait(max(0.0, config.seconds - run.offset()))
    finally:
        for r in runners.values():
            r.stop()
        run.stop.set()
        for th in threads:
            th.join(5.0)
        for task in tasks:
            with contextlib.suppress(Exception):
                task.result(5.0)
        lag.stop()
        run.judge()
    return _results(run, targets, runners, fault_start, sampler, timelines, lag)


def _diagnosis(run: _Run, t: Target) -> dict[str, Any]:
    # For a datastore that missed the recovery goal: what its calls in the
    # tail ended with, and per breaker its state changes in the tail (generations),
    # probes in flight (a permit never handed back would show here) and probe successes.
    before = run.tail_breakers.get(t.name, {})
    breakers = {}
    for key, snap in t.breaker_snapshots().items():
        gen0 = before.get(key, {}).get("generation", snap["generation"])
        breakers[key] = {"state": snap["state"], "changes_in_tail": snap["generation"] - gen0,
                         "probes_in_flight": snap["probes_in_flight"],
                         "probe_successes": snap["probe_successes"],
                         "open_interval_s": round(snap["open_interval"], 3)}
    outcomes = {mode: counts for (name, mode, phase), counts in run.phase_outcomes.items()
                if name == t.name and phase == "tail"}
    return {"tail_outcomes": outcomes, "breakers_at_end": breakers}


def _results(run: _Run, targets: list[Target], runners: dict[str, ScheduleRunner],
             fault_start: float, sampler: ResourceSampler,
             timelines: dict[str, BreakerTimeline], lag: LagProbe) -> dict[str, Any]:
    config = run.config
    end = run.offset()
    recovery: dict[str, Any] = {}
    for t in targets:
        runner = runners[t.name]
        for name, exc in runner.errors:
            run.violate("fault", t.name, end, f"fault {name} failed: {exc!r}")
        removes = [off for off, action, _ in runner.log if action == "remove"]
        healed = fault_start + (removes[-1] if removes else 0.0)
        open_at_end = t.open_breakers()
        line = timelines[t.name]
        took, never = line.recovery(healed, end)
        # Open at the end for longer than a probed breaker of a healthy endpoint takes to
        # close: stuck (a re-open in the last seconds, from a slow call, is not).
        since = line.changes[-1][0] if line.changes else 0.0
        stuck = bool(open_at_end) and (never or end - since > max(5.0, 5 * config.recovery))
        probe = t.has_health_probe()
        met = took <= config.recovery and not stuck
        diagnosis = {} if met else _diagnosis(run, t)
        enforced = probe or config.strict_recovery
        recovery[t.name] = {"last_heal_s": round(healed, 3), "closed_after_s": round(took, 3),
                            "still_open_at_end": bool(open_at_end), "stuck": stuck,
                            "open_at_end": open_at_end, "met": met,
                            "opened_in_warmup": line.opened["warm-up"],
                            "reopened_after_recovery": line.opened_after(healed + took),
                            "health_probe": probe, "enforced": enforced,
                            "open_share": round(line.open_samples * 0.02 / end, 4),
                            **diagnosis}
        if not met and enforced:
            run.violate("recovery", t.name, healed,
                        f"breakers closed {took:.2f} s after the last heal "
                        f"(goal {config.recovery:g} s){' and stuck open' if stuck else ''}")
    nsq: dict[str, Any] = {}
    for t in targets:
        if t.ledger is not None:
            drained = t.ledger.wait_drained(15.0)
            nsq = t.ledger.summary()
            if not drained:
                run.violate("nsq-ledger", t.name, end,
                            f"{nsq['lost']} acknowledged publishes never consumed")
            if nsq["duplicates_past_dedup"]:
                run.violate("nsq-ledger", t.name, end,
                            f"{nsq['duplicates_past_dedup']} duplicates reached the handler")
    resources = flat(sampler.samples, fault_start,
                     {"threads": config.threads_limit, "fds": config.fds_limit,
                      "rss_mb": config.rss_limit_mb, "rss_ratio": config.rss_ratio})
    for name, row in resources.items():
        if not row["ok"]:
            run.violate("resources", "", end, f"{name} grew {row['start']} -> {row['end']} "
                        f"(limit +{row['limit']})")
    return {
        "config": {"seconds": config.seconds, "seed": config.seed,
                   "datastores": list(config.datastores), "budget_ms": config.budget * 1000,
                   "slack_ms": config.slack * 1000, "limit_ms": round(config.limit * 1000, 1),
                   "recovery_s": config.recovery, "threads": config.threads,
                   "pace_ms": config.pace * 1000, "faults": list(config.faults),
                   "warmup_s": config.warmup, "fault_phase_s": config.fault_phase,
                   "tail_s": config.tail},
        "machine": {"cpus": os.cpu_count(), "load_avg": list(os.getloadavg())},
        "replay": config.replay_command(),
        "schedules": {t.name: {"seed": config.schedule_seed(t.name),
                               "windows": len(config.schedule(t.name).windows),
                               "applied": sum(1 for _, a, _ in runners[t.name].log
                                              if a == "apply"),
                               "fingerprint": config.fingerprint(t.name)} for t in targets},
        "calls": {t.name: {m: {**run.stats[(t.name, m)].summary(),
                               "by_phase": {p: run.phase_outcomes.get((t.name, m, p), {})
                                            for p in ("warm-up", "faults", "tail")}}
                           for m in ("sync", "async")}
                  for t in targets},
        "lag": lag.lateness.summary(),
        "recovery": recovery,
        "resources": resources,
        "nsq": nsq,
        "violations": [v.__dict__ for v in run.violations],
        "violation_count": run.violation_count,
        "ok": run.violation_count == 0,
    }
