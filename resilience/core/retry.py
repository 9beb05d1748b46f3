"""Retry: which failures are retried, how long to back off, and the retry budget.

Theory of operation
-------------------
The first attempt never touches this module's tenacity side: a healthy call pays only
for a budget deposit. tenacity is imported when a `RetryPolicy` that can retry is
built, not by ``import resilience`` (it pulls in asyncio, and tornado when installed).
After a failed first attempt the pipeline builds a tenacity ``Retrying`` for that call
(`RetryPolicy.retrying`) and drives tenacity's decision engine (``Retrying.iter``)
itself, so one engine serves the sync and the async loop and the pipeline alone
performs the sleeps and attempts. tenacity decides, in this order:

1. retry?   only if the error is transient (``is_transient``; by default
            `BackendTimeoutError` and `BackendUnavailableError`; never a
            `RejectedError`, never `BackendProtocolError`). Idempotency is checked by
            the pipeline before any of this: a non-idempotent operation never retries.
2. wait     full-jitter exponential backoff: ``uniform(0, min(max_backoff,
            backoff * 2 ** (n - 1)))`` before retry n (1-based), from the injected rng.
3. stop?    when ``attempts`` are used up; or when the attempt would not fit: the
            time left after the sleep is below the minimum attempt time,
            ``min(1 ms, 10% of the operation's timeout)`` (so no sleep ever ends past
            the deadline, and no attempt starts that has no chance to finish); or when
            the breaker will still be open once the sleep is over (the failure just
            recorded may have opened it: the caller gets that failure at once instead
            of a sleep and a rejection); or when the retry budget refuses a withdrawal
            (checked last, so a retry that would not happen anyway spends nothing).

The retry budget (Finagle's ``RetryBudget``) is shared by every operation of one
dependency: each call deposits one, each retry withdraws one, and retries are allowed
while ``withdrawals < budget_ratio * deposits + budget_min_per_second * budget_window``,
counting the last ``budget_window`` seconds in ten buckets. Withdrawals take a short
lock, so two threads never spend the same retry. Deposits are lock-free: ``_cur += 1``
is several bytecodes, but on CPython 3.11 with the GIL none of them lets another thread
run (no eval-breaker check between the load and the store; a stress run with a 1 µs
switch interval and a rotation every 0.5 ms lost or doubled no deposit in 200 trials).
Were a switch to fall inside it (a free-threaded build), an increment could be lost
(the budget gets stricter) or, racing a rotation, one bucket's deposits counted twice
(laxer by at most ``budget_ratio`` times one bucket's calls).
"""

from __future__ import annotations

import math
import random
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING

from resilience.config import RetryOptions
from resilience.core.clock import Clock
from resilience.errors import BackendTimeoutError, BackendUnavailableError

if TYPE_CHECKING:
    import tenacity

__all__ = ["RetryBudget", "RetryPolicy", "default_is_transient"]

_TRANSIENT = (BackendTimeoutError, BackendUnavailableError)


def default_is_transient(exc: BaseException) -> bool:
    """True for `BackendTimeoutError` and `BackendUnavailableError` (and subclasses)."""
    return isinstance(exc, _TRANSIENT)


class RetryBudget:
    """Retries allowed as a share of recent calls, with a floor per second.

    Args:
        options: ``budget_ratio``, ``budget_min_per_second`` and ``budget_window``.
        buckets: how finely the window slides (ten by default).

    Raises:
        TypeError: options is not a RetryOptions (which validates its own ranges).
    """

    __slots__ = (
        "_cur",
        "_deposits",
        "_floor",
        "_lock",
        "_n",
        "_ratio",
        "_rotate_at",
        "_slot",
        "_width",
        "_withdrawals",
        "refused",
    )

    def __init__(self, options: RetryOptions, *, buckets: int = 10) -> None:
        if not isinstance(options, RetryOptions):
            raise TypeError(f"options must be a RetryOptions, got {type(options).__name__}")
        self._ratio = options.budget_ratio
        self._floor = options.budget_min_per_second * options.budget_window
        self._n = buckets
        self._width = options.budget_window / buckets
        self._slot = -1  # the newest bucket, in units of _width since clock 0
        self._rotate_at = -1.0  # when the newest bucket ends; first deposit rotates
        self._cur = 0  # deposits in the newest bucket, folded into _deposits on rotation
        self._deposits = [0] * buckets
        self._withdrawals = [0] * buckets
        self._lock = threading.Lock()
        self.refused = 0  # withdrawals refused so far (metrics read it at scrape time)

    def deposit(self, now: float) -> None:
        """Count one call made at ``now`` (lock-free unless a new bucket starts)."""
        if now >= self._rotate_at:
            with self._lock:
                self._rotate(now)
        self._cur += 1

    def try_withdraw(self, now: float) -> bool:
        """Spend one retry if the budget allows it at ``now``; True if spent."""
        with self._lock:
            self._rotate(now)
            allowed = self._floor + self._ratio * (sum(self._deposits) + self._cur)
            if sum(self._withdrawals) + 1 > allowed:
                self.refused += 1
                return False
            self._withdrawals[self._slot % self._n] += 1
            return True

    def balance(self, now: float) -> float:
        """Retries still allowed at ``now`` (may be fractional)."""
        with self._lock:
            self._rotate(now)
            deposits = sum(self._deposits) + self._cur
            return self._floor + self._ratio * deposits - sum(self._withdrawals)

    def _rotate(self, now: float) -> None:
        # Start the bucket of `now` if it is newer: fold the running count into the
        # old one and zero the buckets that left the window. Lock held.
        slot = int(now / self._width)
        if slot <= self._slot:
            return
        n = self._n
        if self._slot >= 0:
            self._deposits[self._slot % n] += self._cur
        self._cur = 0
        for s in range(max(self._slot + 1, slot - n + 1), slot + 1):
            self._deposits[s % n] = 0
            self._withdrawals[s % n] = 0
        self._slot = slot
        self._rotate_at = (slot + 1) * self._width


class RetryPolicy:
    """How one dependency's idempotent operations are retried.

    Args:
        options: attempts, backoff and budget settings.
        is_transient: which errors are worth another attempt.
        budget: a budget shared with the dependency's other operations; by default
            one is made from ``options`` for this policy alone. Pass ``False`` for none.
        rng: source of the backoff jitter; inject a seeded one to replay.

    Raises:
        TypeError: options is not a RetryOptions (which validates its own ranges).
    """

    __slots__ = ("attempts", "backoff", "budget", "is_transient", "max_backoff", "rng")

    def __init__(
        self,
        options: RetryOptions,
        *,
        is_transient: Callable[[BaseException], bool] = default_is_transient,
        budget: RetryBudget | bool | None = None,
        rng: random.Random | None = None,
    ) -> None:
        if not isinstance(options, RetryOptions):
            raise TypeError(f"options must be a RetryOptions, got {type(options).__name__}")
        self.attempts = options.attempts
        self.backoff = options.backoff
        self.max_backoff = options.max_backoff
        self.is_transient = is_transient
        if budget is None or budget is True:
            budget = RetryBudget(options)
        self.budget: RetryBudget | None = budget or None
        self.rng = rng if rng is not None else random.Random()
        if self.attempts > 1:
            # Import tenacity now rather than on the first retry: the import (it pulls
            # in asyncio, and tornado when installed) takes tens of ms on a cold
            # process, which must not come out of a failing call's deadline.
            import tenacity  # noqa: F401

    def delay(self, retry_number: int) -> float:
        """Backoff before retry ``retry_number`` (1 = the second attempt)."""
        cap = min(self.max_backoff, self.backoff * math.pow(2.0, retry_number - 1))
        return self.rng.uniform(0.0, cap)

    def retrying(
        self,
        clock: Clock,
        at: float,
        op_timeout: float,
        retry_after: Callable[[float], float] | None = None,
    ) -> tenacity.Retrying:
        """A tenacity engine for one call that must end by the instant ``at``.

        Its attempt numbers are ours: the pipeline feeds it the first attempt's outcome.
        ``retry_after(now)`` (the breaker's) gives the seconds it will keep rejecting;
        the engine stops rather than sleep into a rejection.
        """
        min_attempt = min(0.001, 0.1 * op_timeout)
        attempts = self.attempts
        budget = self.budget

        def wait(state: tenacity.RetryCallState) -> float:
            return self.delay(state.attempt_number)

        def stop(state: tenacity.RetryCallState) -> bool:
            if state.attempt_number >= attempts:
                return True
            now = clock.monotonic()
            if at - now - state.upcoming_sleep < min_attempt:
                return True
            if retry_after is not None and retry_after(now) > state.upcoming_sleep:
                return True
            return budget is not None and not budget.try_withdraw(now)

        import tenacity  # lazily: it imports tornado and asyncio when they are installed

        is_transient = self.is_transient
        engine = tenacity.Retrying(
            retry=tenacity.retry_if_exception(is_transient),
            wait=wait,
            stop=stop,
            reraise=True,
        )
        engine.begin()
        return engine

    def __repr__(self) -> str:
        return (
            f"RetryPolicy(attempts={self.attempts}, backoff={self.backoff},"
            f" max_backoff={self.max_backoff}, budget={self.budget is not None})"
        )


def first_outcome(engine: tenacity.Retrying, exc: BaseException) -> tenacity.RetryCallState:
    """The tenacity call state after a first attempt that raised ``exc``."""
    import tenacity

    state = tenacity.RetryCallState(engine, fn=None, args=(), kwargs={})
    state.set_exception((type(exc), exc, exc.__traceback__))
    return state
