"""Budget checks every client's fault tests share: time one call, and judge a batch.

One copy for memcached, Cassandra and NSQ (each package passes its own budget and
slack): a faulted call must end by its deadline, not by a multiple of it.
"""

from __future__ import annotations

import gc
import os
import statistics
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

from resilience.errors import BackendError, ResilienceError

Outcome = tuple[float, ResilienceError | None]


def timed(fn: Callable[[], Any]) -> Outcome:
    """``(wall seconds, the ResilienceError raised or None)`` of one call.

    The cyclic garbage collector is off during the call: a full collection of the test
    process stops every thread (up to 235 ms measured in a full run, see
    ``tests/conftest.py``), a pause of the process, not of the call. It runs after.
    """
    enabled = gc.isenabled()
    gc.disable()
    start = time.monotonic()
    error: ResilienceError | None = None
    try:
        fn()
    except ResilienceError as exc:
        # Tests keep thousands of these: without their frames they stay small, and the
        # garbage collector's passes over them stay short (they stalled calls by 1 s).
        exc.__traceback__ = None
        if exc.__cause__ is not None:
            exc.__cause__.__traceback__ = None
        error = exc
    finally:
        wall = time.monotonic() - start
        if enabled:
            gc.enable()
    return wall, error


def check_within_budget(outcomes: Sequence[Outcome], budget: float, small: float,
                        margin: float, what: str = "", *,
                        require_elapsed: bool = False) -> None:
    """The calls that failed in the backend ended by their deadline, not a multiple of it.

    Every call within ``budget + margin``; the median wall time and the median of the
    errors' ``.elapsed`` within ``budget + small``. A retry that got a fresh budget
    would put both medians near ``2 * budget``. ``require_elapsed``: every backend
    error must carry ``.elapsed``.
    """
    for wall, _ in outcomes:
        assert wall < budget + margin, f"{what}: a call took {wall:.3f} s"
    failed = [(wall, err) for wall, err in outcomes if isinstance(err, BackendError)]
    assert failed, f"{what}: no call failed in the backend: {outcomes}"
    walls = [wall for wall, _ in failed]
    elapsed = [err.elapsed for _, err in failed]
    if require_elapsed:
        assert all(e is not None for e in elapsed), f"{what}: an error without .elapsed"
    assert statistics.median(walls) < budget + small, f"{what}: wall times {walls}"
    assert statistics.median(e for e in elapsed if e is not None) < budget + small, \
        f"{what}: .elapsed {elapsed}"


def open_fds() -> int:
    """File descriptors open in this process now."""
    return len(os.listdir("/proc/self/fd"))


def thread_count() -> int:
    return threading.active_count()
