"""The NSQ ledger: every acknowledged publish must be consumed, once, after de-duplication.

Keys are matched as they arrive and then forgotten (only a bounded window of recent
matches is kept, to tell a late duplicate from a stray), so an hour-long soak's memory
stays flat. A message consumed before its publish returned (the consumer can be faster
than the acknowledgement) waits in ``early`` until the ack arrives.

At the end: ``pending`` (acknowledged, never consumed) must be empty; ``early`` left
over are messages consumed whose publish raised (nsqd queued them but the answer was
lost: at-least-once, reported, not a violation); ``duplicates`` are deliveries of a key
already consumed that reached the handler (the consumer's seen-store should stop them).
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict

__all__ = ["Ledger"]


class Ledger:
    """Thread-safe acknowledged-versus-consumed bookkeeping (see the module docstring)."""

    def __init__(self, window: int = 50_000) -> None:
        self._lock = threading.Lock()
        self._pending: dict[str, float] = {}  # acked, not yet consumed -> ack time
        self._early: dict[str, float] = {}  # consumed, not (yet) acked
        self._done: OrderedDict[str, None] = OrderedDict()  # recent matches
        self._window = window
        self.acked_total = 0
        self.consumed_total = 0
        self.matched = 0
        self.duplicates = 0

    def acked(self, key: str | None) -> None:
        if key is None:
            raise ValueError("key: the soak's publisher must publish with keys=True")
        with self._lock:
            self.acked_total += 1
            if self._early.pop(key, None) is not None:
                self._match(key)
            else:
                self._pending[key] = time.monotonic()

    def consumed(self, key: str | None) -> None:
        if key is None:
            raise ValueError("a message without an idempotency key reached the soak consumer")
        with self._lock:
            self.consumed_total += 1
            if key in self._done or key in self._early:
                self.duplicates += 1
            elif self._pending.pop(key, None) is not None:
                self._match(key)
            else:
                self._early[key] = time.monotonic()

    def _match(self, key: str) -> None:
        self.matched += 1
        self._done[key] = None
        if len(self._done) > self._window:
            self._done.popitem(last=False)

    @property
    def pending(self) -> int:
        """Acknowledged publishes not consumed yet."""
        with self._lock:
            return len(self._pending)

    def wait_drained(self, timeout: float) -> bool:
        """Wait (bounded by ``timeout``) until every acknowledged publish was consumed."""
        end = time.monotonic() + timeout
        while self.pending and time.monotonic() < end:
            time.sleep(0.05)
        return not self.pending

    def summary(self) -> dict[str, int]:
        with self._lock:
            return {"acknowledged": self.acked_total, "consumed": self.consumed_total,
                    "matched": self.matched, "lost": len(self._pending),
                    "consumed_unacknowledged": len(self._early),
                    "duplicates_past_dedup": self.duplicates}
