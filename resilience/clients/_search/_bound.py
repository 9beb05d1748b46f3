"""The deadline of the request a thread is sending, which the search pools and sockets keep.

Every attempt of a search client stores its deadline here (``monotonic`` seconds) for
the driver call it makes and restores what was there after; the hardened urllib3 pool
(:mod:`._http`) and its sockets read it. A plain thread-local, not the ambient
:data:`~resilience.core.deadline.DEADLINE`: the request is sent on the thread that runs
the attempt (a worker thread for the asyncio clients), and setting and resetting a
thread-local attribute costs a fraction of a context variable's ``set`` and ``reset``
(each builds a new context mapping; the token is an object too). Outside an attempt
(a health probe sets it itself) it is None, and the pool bounds a request by its
default timeout.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

__all__ = ["BOUND", "bounded"]


class _Bound(threading.local):
    at: float | None = None


BOUND = _Bound()
"""``BOUND.at``: this thread's request deadline, or None."""


@contextmanager
def bounded(seconds: float) -> Iterator[None]:
    """``BOUND.at`` ``seconds`` from now inside the block, what was there restored after
    (a cold path's way, e.g. a health probe; the attempts set it inline)."""
    prev = BOUND.at
    BOUND.at = time.monotonic() + seconds
    try:
        yield
    finally:
        BOUND.at = prev
