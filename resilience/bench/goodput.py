"""``resilience bench goodput``: how much useful work a service does before, during and
after its cache hangs (docs/bench.md#goodput).

For each *run* (a datastore, a service mode and an outage length) it starts one service
process per subject (:mod:`resilience.bench.goodput_service`) against the same
datastore server, and one
closed-loop load process per service (:mod:`resilience.bench.goodput_load`), all at
the same time, so whatever else the machine does hits every subject alike. The run has
three phases: *healthy*, *hung* (the server SIGSTOPped for the outage) and *healed*
(SIGCONT). Meanwhile it samples each service's thread count. The records become the
figures of :mod:`resilience.bench.goodput_report`.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from resilience.bench.goodput_load import read_records
from resilience.bench.goodput_readers import (
    ASYNC_DATASTORES,
    BUDGET,
    DATASTORES,
    SUBJECTS,
    seed,
    start_server,
)
from resilience.bench.goodput_report import summarize
from resilience.bench.goodput_service import THREADS

__all__ = ["MODES", "Settings", "run_goodput"]

MODES = ("sync", "async")
_START_TIMEOUT = 20.0  # a service process must print its port within this


@dataclass(frozen=True)
class Settings:
    """What one ``resilience bench goodput`` invocation runs; every phase is bounded."""

    datastores: tuple[str, ...] = ("memcached",)
    modes: tuple[str, ...] = MODES  # async only for ASYNC_DATASTORES
    outages: tuple[float, ...] = (10.0,)  # seconds memcached stays frozen, one run each
    subjects: tuple[str, ...] = SUBJECTS
    healthy: float = 5.0      # seconds before the freeze
    healed: float = 10.0      # seconds after the thaw
    concurrency: int = 16     # closed-loop users per load process
    # Each user's pause between requests (jittered). It keeps the four services and
    # their loads below what 2 cores serve, so a subject's goodput is set by its own
    # latency, not by its share of a saturated CPU (with none, the control and the
    # wrapper were CPU-bound and 10-25% apart on the healthy path alone).
    think: float = 0.1
    request_timeout: float = 1.0  # a request unanswered this long counts as failed
    max_requests: int = 2_000_000  # per load process, a bound on memory

    @classmethod
    def quick(cls) -> Settings:
        """Under 2 minutes: a 5 s outage, shorter phases."""
        return cls(outages=(5.0,), healthy=3.0, healed=5.0)

    def validate(self) -> None:
        """Raise ValueError naming the bad setting."""
        for datastore in self.datastores:
            if datastore not in DATASTORES:
                raise ValueError(f"unknown datastore {datastore!r}; "
                                 f"choose from {', '.join(DATASTORES)}")
        for mode in self.modes:
            if mode not in MODES:
                raise ValueError(f"unknown mode {mode!r}; choose from {', '.join(MODES)}")
        for subject in self.subjects:
            if subject not in SUBJECTS:
                raise ValueError(f"unknown subject {subject!r}; "
                                 f"choose from {', '.join(SUBJECTS)}")
        if not (self.datastores and self.modes and self.subjects and self.outages):
            raise ValueError("need at least one datastore, mode, subject and outage")
        if any(o <= 0 or o > 3600 for o in self.outages):
            raise ValueError(f"outages must be > 0 and <= 3600 s, got {self.outages}")
        if self.healthy <= 0 or self.healed <= 0 or self.concurrency < 1 or self.think < 0:
            raise ValueError("healthy and healed must be > 0 s, concurrency >= 1, think >= 0")


@dataclass
class _Service:
    subject: str
    proc: subprocess.Popen[str]
    port: int
    threads: list[tuple[float, int]] = field(default_factory=list)


def _python() -> list[str]:
    return [sys.executable, "-m"]


def _spawn_service(datastore: str, mode: str, subject: str, address: str, key: str
                   ) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [*_python(), "resilience.bench.goodput_service", "--mode", mode,
         "--subject", subject, "--datastore", datastore, "--address", address,
         "--key", key],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, start_new_session=True)


def _read_line(proc: subprocess.Popen[str], deadline: float) -> str:
    """The first line ``proc`` prints, or what it printed by ``deadline`` or its exit."""
    assert proc.stdout is not None
    os.set_blocking(proc.stdout.fileno(), False)
    line = ""
    while not line.endswith("\n") and time.monotonic() < deadline and proc.poll() is None:
        line += proc.stdout.readline()
        time.sleep(0.01)
    return line


def _await_port(subject: str, proc: subprocess.Popen[str], deadline: float) -> _Service:
    """The service once it printed its port; RuntimeError if not by ``deadline``."""
    line = _read_line(proc, deadline)
    if not line.startswith("port "):
        raise RuntimeError(f"goodput service {subject} did not start within "
                           f"{_START_TIMEOUT} s (exit {proc.poll()})")
    return _Service(subject, proc, int(line.split()[1]))


def _stop(proc: subprocess.Popen[Any]) -> None:
    with contextlib.suppress(ProcessLookupError):
        proc.kill()
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(5.0)


def _threads(pid: int) -> int | None:
    try:
        with open(f"/proc/{pid}/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("Threads:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return None


def _warm(service: _Service) -> None:
    """One request, so the healthy phase does not begin with a cold connection."""
    with contextlib.suppress(OSError):
        urllib.request.urlopen(f"http://127.0.0.1:{service.port}/item", timeout=2.0).read()


def _sample_until(services: Sequence[_Service], until: float, step: float = 0.2) -> None:
    while (now := time.monotonic()) < until:
        for s in services:
            n = _threads(s.proc.pid)
            if n is not None:
                s.threads.append((now, n))
        time.sleep(min(step, max(0.0, until - time.monotonic())))


@contextlib.contextmanager
def _services(datastore: str, mode: str, subjects: Sequence[str], address: str, key: str
              ) -> Iterator[list[_Service]]:
    procs = {}
    try:
        for subject in subjects:  # all at once: their imports overlap
            procs[subject] = _spawn_service(datastore, mode, subject, address, key)
        deadline = time.monotonic() + _START_TIMEOUT
        yield [_await_port(subject, proc, deadline) for subject, proc in procs.items()]
    finally:
        for proc in procs.values():
            _stop(proc)


def run_one(server: Any, datastore: str, key: str, mode: str, outage: float,
            settings: Settings, work: Path) -> dict[str, Any]:
    """One run: every subject's service under load through healthy, hung and healed."""
    address = f"{server.host}:{server.port}"
    with _services(datastore, mode, settings.subjects, address, key) as services:
        for s in services:
            _warm(s)
        loads = []
        for s in services:
            out = work / f"{datastore}-{mode}-{outage:g}-{s.subject}.bin"
            cmd = [*_python(), "resilience.bench.goodput_load",
                   "--target", f"127.0.0.1:{s.port}",
                   "--concurrency", str(settings.concurrency),
                   "--timeout", str(settings.request_timeout),
                   "--think", str(settings.think),
                   "--start-at", "-1",  # ready first, then the times on stdin
                   "--max-requests", str(settings.max_requests), "--out", str(out)]
            loads.append((s, out, subprocess.Popen(cmd, stdin=subprocess.PIPE,
                                                   stdout=subprocess.PIPE, text=True,
                                                   start_new_session=True)))
        try:
            t0, end = _start_loads([p for _s, _o, p in loads], settings, outage)
            _sample_until(services, t0 + settings.healthy)
            server.freeze()
            frozen_at = time.monotonic()
            try:
                _sample_until(services, frozen_at + outage)
            finally:
                server.thaw()
            healed_at = time.monotonic()
            _sample_until(services, end + settings.request_timeout)
            for _s, _out, proc in loads:
                proc.wait(settings.request_timeout + 30.0)
        finally:
            for _s, _out, proc in loads:
                if proc.poll() is None:
                    _stop(proc)
        records = {s.subject: read_records(out) for s, out, _p in loads}
        threads = {s.subject: s.threads for s in services}
    return summarize(datastore=datastore, mode=mode, outage=outage, start=t0, frozen_at=frozen_at,
                     healed_at=healed_at, end=end, records=records, threads=threads,
                     request_timeout=settings.request_timeout)


def _start_loads(procs: Sequence[subprocess.Popen[str]], settings: Settings,
                 outage: float) -> tuple[float, float]:
    """Wait until every load process is ready (bounded), then give them all the same
    start and stop times; returns them."""
    deadline = time.monotonic() + _START_TIMEOUT
    for proc in procs:
        if _read_line(proc, deadline).strip() != "ready":
            raise RuntimeError(f"a goodput load process did not start within {_START_TIMEOUT} s")
    t0 = time.monotonic() + 0.2
    end = t0 + settings.healthy + outage + settings.healed
    for proc in procs:
        assert proc.stdin is not None
        proc.stdin.write(f"{t0!r} {end!r}\n")
        proc.stdin.close()
    return t0, end


def _progress(message: str) -> None:
    print(f"[goodput] {message}", file=sys.stderr, flush=True)


def run_goodput(settings: Settings, servers: Mapping[str, Any] | None = None,
                work_dir: Path | None = None) -> dict[str, Any]:
    """Make every run of ``settings``; return the JSON-able result. ``servers`` maps a
    datastore to a running harness server to use (and leave running); for the others a
    server is started here and killed at the end."""
    from resilience.bench.machine import cpu_model, package_versions

    settings.validate()
    given = dict(servers or {})
    work = Path(tempfile.mkdtemp(prefix="goodput-", dir=work_dir))
    runs = []
    began = time.monotonic()
    try:
        for datastore in settings.datastores:
            if datastore in given:
                server, key = given[datastore], seed(datastore, given[datastore])
            else:
                server, key = start_server(datastore, work)
            try:
                for outage in settings.outages:
                    for mode in settings.modes:
                        if mode == "async" and datastore not in ASYNC_DATASTORES:
                            continue
                        _progress(f"{datastore}, {mode} service, {outage:g} s outage: "
                                  f"{settings.healthy + outage + settings.healed:g} s")
                        runs.append(run_one(server, datastore, key, mode, outage,
                                            settings, work))
            finally:
                if datastore not in given:
                    server.kill()
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return {
        "benchmark": "goodput",
        "settings": {**replace(settings).__dict__,
                     "budget_s": BUDGET, "service_threads": THREADS},
        "machine": {"cpu": cpu_model(), "cores": os.cpu_count(),
                    "load_average": [round(x, 2) for x in os.getloadavg()],
                    "python": sys.version.split()[0],
                    "packages": package_versions(["pymemcache", "aiomcache", "kazoo", "pynsq",
                                                  "elasticsearch", "opensearch-py",
                                                  "cassandra-driver"])},
        "duration_s": round(time.monotonic() - began, 1),
        "runs": runs,
    }
