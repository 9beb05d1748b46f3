"""A fleet of worker processes (``_worker.py``) whose JSON lines are collected by a
reader thread each; every wait is bounded."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

WORKER = Path(__file__).with_name("_worker.py")
ROOT = Path(__file__).resolve().parents[2]

Event = dict[str, Any]


class Worker:
    def __init__(self, *args: str) -> None:
        self.proc = subprocess.Popen([sys.executable, str(WORKER), *args], cwd=ROOT,
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, text=True,
                                     env={**os.environ, "PYTHONPATH": str(ROOT)})
        self.events: list[Event] = []
        self._lock = threading.Lock()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            try:
                event = json.loads(line)
            except ValueError:
                continue
            with self._lock:
                self.events.append(event)

    def seen(self, kind: str, since: float = 0.0) -> list[Event]:
        with self._lock:
            return [e for e in self.events if e["kind"] == kind and e["t"] >= since]

    def stop(self) -> str:
        """Close stdin (the worker ends), kill after 10 s; returns stderr's tail."""
        try:
            assert self.proc.stdin is not None
            self.proc.stdin.close()
            self.proc.wait(10.0)
        except (subprocess.TimeoutExpired, OSError):
            self.proc.kill()
            self.proc.wait(5.0)
        assert self.proc.stderr is not None
        return self.proc.stderr.read()[-2000:]


def wait_until(check: Callable[[], bool], limit: float, what: str) -> float:
    """Seconds until ``check()`` held (polled every 10 ms); AssertionError after ``limit``."""
    began = time.monotonic()
    while not check():
        if time.monotonic() - began > limit:
            raise AssertionError(f"not within {limit} s: {what}")
        time.sleep(0.01)
    return time.monotonic() - began


def applied_at(worker: Worker, version: int) -> float | None:
    """Wall time the worker applied ``version``, or None."""
    hits = [e["t"] for e in worker.seen("applied") if e["version"] == version]
    return hits[0] if hits else None
