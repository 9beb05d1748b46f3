"""The deadline: one absolute monotonic instant per logical call, carried in a ContextVar.

Theory of operation
-------------------
``with deadline(0.2):`` stores ``now + 0.2`` (seconds on the given clock) in a
ContextVar, unless the deadline already in force is earlier: nesting only ever shrinks
it. Everything nested sees it: pipelines clamp each call's budget to it, asyncio tasks
created inside inherit it (tasks copy the context). Threads do not inherit contextvars,
so `propagate` / `submit` carry it across explicitly. The pipeline sets the ContextVar
for the duration of each attempt too, so calls nested in an attempt never outlive it.

``async with deadline(0.2):`` does the same and also arms ``asyncio.timeout`` at the same
instant, so plain awaits in user code (not only our pipelines) are cancelled when the
time is up; that cancellation leaves the block as `DeadlineExceededError` (a builtin
TimeoutError too). The timer is armed only with the real clock: a fake clock's instants
mean nothing to the event loop.

Reading the deadline costs one ContextVar lookup; a spent deadline makes the pipeline
raise `DeadlineExceededError` before any I/O.
"""

from __future__ import annotations

import contextvars
import functools
import math
from collections.abc import Callable
from types import TracebackType
from typing import TYPE_CHECKING, Any, ParamSpec, TypeVar

from resilience.core.clock import SYSTEM_CLOCK, Clock
from resilience.errors import ConfigError, DeadlineExceededError

if TYPE_CHECKING:
    from concurrent.futures import Executor, Future

__all__ = ["current_deadline", "deadline", "propagate", "remaining", "submit"]

P = ParamSpec("P")
T = TypeVar("T")

#: The absolute instant (clock seconds) the current logical call must end by, or None.
DEADLINE: contextvars.ContextVar[float | None] = contextvars.ContextVar(
    "resilience_deadline", default=None
)


class deadline:  # lower case: used like a function, ``with resilience.deadline(0.2):``
    """Set (or shrink) the ambient deadline for the block; sync and async.

    Args:
        seconds: budget from now; a finite number >= 0. 0 means already spent: the
            first guarded call in the block raises DeadlineExceededError.
        clock: the clock the instant is measured on; the pipelines reading it must
            use the same one (the default, the system clock, for real code).

    Raises:
        ConfigError: ``seconds`` is negative, NaN, infinite or not a number.
        DeadlineExceededError: from ``async with``, when the block's awaits are
            cancelled because the deadline passed.

    Attributes:
        at: the instant in force inside the block (after nesting), set on entry.
    """

    __slots__ = ("_clock", "_seconds", "_start", "_timeout", "_token", "at")

    def __init__(self, seconds: float, *, clock: Clock = SYSTEM_CLOCK) -> None:
        if (
            isinstance(seconds, bool)
            or not isinstance(seconds, int | float)
            or not math.isfinite(seconds)
            or seconds < 0
        ):
            raise ConfigError(f"deadline(seconds={seconds!r}): expected a finite number >= 0")
        self._seconds = float(seconds)
        self._clock = clock
        self._token: contextvars.Token[float | None] | None = None
        self._timeout: Any = None
        self._start = 0.0
        self.at = math.inf

    def __enter__(self) -> deadline:
        if self._token is not None:
            raise RuntimeError("a deadline object cannot be entered twice; make a new one")
        self._start = self._clock.monotonic()
        at = self._start + self._seconds
        outer = DEADLINE.get()
        if outer is not None and outer < at:
            at = outer
        self.at = at
        self._token = DEADLINE.set(at)
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        token, self._token = self._token, None
        if token is not None:
            DEADLINE.reset(token)

    async def __aenter__(self) -> deadline:
        self.__enter__()
        if self._clock is SYSTEM_CLOCK:
            import asyncio

            # loop.time() is time.monotonic(), the same clock as self.at.
            self._timeout = asyncio.timeout_at(self.at)
            await self._timeout.__aenter__()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        timeout, self._timeout = self._timeout, None
        try:
            if timeout is not None:
                await timeout.__aexit__(exc_type, exc, tb)
        except TimeoutError as err:
            if timeout.expired():
                # Measured: an earlier outer deadline may have cut the block short.
                elapsed = self._clock.monotonic() - self._start
                raise DeadlineExceededError(
                    "deadline passed inside 'async with deadline()'", elapsed=elapsed
                ) from err
            raise
        finally:
            self.__exit__(exc_type, exc, tb)


def current_deadline() -> float | None:
    """The ambient deadline as an absolute clock instant, or None when none is set."""
    return DEADLINE.get()


def remaining(clock: Clock = SYSTEM_CLOCK) -> float | None:
    """Seconds left before the ambient deadline (0.0 once spent), or None if none is set."""
    at = DEADLINE.get()
    if at is None:
        return None
    left = at - clock.monotonic()
    return left if left > 0.0 else 0.0


def propagate(fn: Callable[P, T]) -> Callable[P, T]:
    """Bind the current deadline to ``fn`` so it applies wherever ``fn`` later runs.

    Use it to hand work to a thread: ``Thread(target=propagate(work))``. Only the
    deadline is carried (not every contextvar), so the result may run in several
    threads at once. ``asyncio.to_thread`` already copies the context; plain
    ``loop.run_in_executor`` and ``ThreadPoolExecutor.submit`` do not.
    """
    at = DEADLINE.get()

    @functools.wraps(fn)
    def bound(*args: P.args, **kwargs: P.kwargs) -> T:
        token = DEADLINE.set(at)
        try:
            return fn(*args, **kwargs)
        finally:
            DEADLINE.reset(token)

    return bound


def submit(
    executor: Executor, fn: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs
) -> Future[T]:
    """``executor.submit(fn, ...)`` with the caller's deadline carried into the worker."""
    return executor.submit(propagate(fn), *args, **kwargs)
