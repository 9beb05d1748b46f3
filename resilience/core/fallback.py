"""Fallback: what an operation returns instead of raising when it is rejected or fails.

A fallback is either a fixed value or a function of the exception. It is consulted
after the pipeline has given up (rejection, or the last failed attempt) and only for
errors the pipeline handles: rejections (`RejectedError`), backend failures
(`BackendError`) and, for service code, exceptions its policy counts as failures.
Application outcomes (``is_failure(exc)`` false) and cancellation are raised as they
are. The failure is still recorded in the breaker and a ``fallback_used`` event is
emitted (besides the ``rejected``/``failure`` one): the fallback hides the error from
the caller, never from the operator.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Generic, TypeVar

__all__ = ["Fallback", "as_fallback"]

T = TypeVar("T")


class Fallback(Generic[T]):
    """A fallback; build it with `Fallback.value` or `Fallback.call`.

    Calling it, ``fb(exc)``, gives the value to return in place of raising ``exc``.
    """

    __slots__ = ("_fn",)

    def __init__(self, fn: Callable[[BaseException], T]) -> None:
        if not callable(fn):
            raise TypeError(f"a fallback function must be callable, got {fn!r}")
        self._fn = fn

    @classmethod
    def value(cls, value: T) -> Fallback[T]:
        """Always return ``value`` (use this to return a callable as the value)."""
        return cls(lambda _exc: value)

    @classmethod
    def call(cls, fn: Callable[[BaseException], T]) -> Fallback[T]:
        """Return ``fn(exc)``; if ``fn`` raises, that exception reaches the caller."""
        return cls(fn)

    def __call__(self, exc: BaseException) -> T:
        return self._fn(exc)

    def __repr__(self) -> str:
        return f"Fallback({self._fn!r})"


def as_fallback(spec: object) -> Fallback[object] | None:
    """Normalise a ``fallback=`` argument: None (no fallback), a `Fallback`, a callable
    taking the exception, or any other value to return as is."""
    if spec is None:
        return None
    if isinstance(spec, Fallback):
        return spec
    if callable(spec):
        return Fallback(spec)
    return Fallback.value(spec)
