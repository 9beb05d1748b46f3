"""Every exception `resilience` raises.

::

    ResilienceError
    ├── RejectedError               no I/O was attempted
    │   ├── CircuitOpenError        .retry_after: seconds until a probe may go through
    │   ├── BulkheadFullError
    │   └── DeadlineExceededError   (also a builtin TimeoutError)
    ├── BackendError                the driver failed; __cause__ is the driver's exception
    │   ├── BackendTimeoutError     (also a builtin TimeoutError)
    │   ├── BackendUnavailableError refused, reset, no live hosts, closed client
    │   └── BackendProtocolError    garbage from the wire
    └── ConfigError                 (also ValueError) names the variable or argument
        └── MissingDriverError      (also ImportError) names the extra to install

Each error carries the ``service`` (for example ``"memcache"``), the ``endpoint`` (a
node such as ``"127.0.0.1:11211"``), the ``operation`` (``"get"``) and the ``elapsed``
time in seconds since the call began, whichever of them are known. None of them ever
holds a secret: endpoints are host:port, never URLs with credentials. A multi-key
operation that failed on some nodes also says what it got (``partial``) and which keys
failed (``failed_keys``).

The message is built lazily in ``__str__``: rejections are raised on the hot path of a
failing dependency and must cost microseconds.
"""

from __future__ import annotations

from typing import Any, TypeVar

__all__ = [
    "BackendError",
    "BackendProtocolError",
    "BackendTimeoutError",
    "BackendUnavailableError",
    "BulkheadFullError",
    "CircuitOpenError",
    "ConfigError",
    "DeadlineExceededError",
    "MissingDriverError",
    "RejectedError",
    "ResilienceError",
]


_E = TypeVar("_E", bound="ResilienceError")


class ResilienceError(Exception):
    """Base of every error raised by `resilience`.

    Args:
        detail: what went wrong, in a few words (each class has a default).
        service: the datastore family, for example ``"memcache"``.
        endpoint: the node or cluster the call was for, ``host:port`` or a name.
        operation: the operation, for example ``"get"``.
        elapsed: seconds from the start of the call to this error.
    """

    # Class-level defaults: the constructor only stores what differs, because an
    # open breaker builds one of these per rejected call and must stay near 1 µs.
    detail: str = ""
    service: str | None = None
    endpoint: str | None = None
    operation: str | None = None
    elapsed: float | None = None
    partial: Any = None
    """A multi-key operation's result from the nodes that answered (its docstring says
    what: values found, keys not stored); None for single-key operations."""
    failed_keys: tuple[Any, ...] = ()
    """A multi-key operation's keys whose node failed (their outcome is unknown)."""
    ambiguous: bool = False
    """True when a write may have taken effect although the call failed (it timed out,
    or the connection closed, after the request was sent): retry it only if a repeat
    is harmless (an idempotency key the consumer de-duplicates, for example)."""

    def __init__(
        self,
        detail: str | None = None,
        *,
        service: str | None = None,
        endpoint: str | None = None,
        operation: str | None = None,
        elapsed: float | None = None,
    ) -> None:
        # No super().__init__: BaseException.__new__ already stored the positional
        # args, and the chained keyword call alone cost ~0.3 µs per rejection.
        if detail is not None:
            self.detail = detail
        self.service = service
        self.endpoint = endpoint
        self.operation = operation
        self.elapsed = elapsed

    def __repr__(self) -> str:
        return f"{type(self).__name__}({str(self)!r})"

    def _where(self) -> str:
        parts = []
        if self.service:
            parts.append(self.service)
        if self.operation:
            parts.append(self.operation)
        head = " ".join(parts)
        if self.endpoint and self.endpoint != self.service:
            head = f"{head} on {self.endpoint}" if head else self.endpoint
        return head

    def __str__(self) -> str:
        where = self._where()
        msg = f"{where}: {self.detail}" if where else self.detail
        if self.elapsed is not None:
            msg = f"{msg} (after {self.elapsed * 1000:.1f} ms)"
        return msg

    def __reduce__(self):  # type: ignore[no-untyped-def]
        # Keep keyword fields through pickling (multiprocessing, concurrent.futures).
        return (
            _rebuild,
            (
                type(self),
                self.detail,
                self.service,
                self.endpoint,
                self.operation,
                self.elapsed,
                self._extra_state(),
            ),
        )

    def _extra_state(self) -> dict[str, object]:
        extra: dict[str, object] = {}
        if self.partial is not None:
            extra["partial"] = self.partial
        if self.failed_keys:
            extra["failed_keys"] = self.failed_keys
        if self.ambiguous:
            extra["ambiguous"] = True
        return extra


def _rebuild(
    cls: type[ResilienceError],
    detail: str,
    service: str | None,
    endpoint: str | None,
    operation: str | None,
    elapsed: float | None,
    extra: dict[str, object],
) -> ResilienceError:
    err = cls.__new__(cls)
    ResilienceError.__init__(
        err, detail, service=service, endpoint=endpoint, operation=operation, elapsed=elapsed
    )
    for key, value in extra.items():
        setattr(err, key, value)
    return err


# Builds an instance without __init__; only for classes whose __new__ is BaseException's
# (CircuitOpenError, the hottest rejection), not the OSError-based TimeoutError ones.
_new = BaseException.__new__


def _fast_error(cls: type[_E], service: str, endpoint: str, operation: str, elapsed: float) -> _E:
    """Build ``cls`` without running ``__init__``: the pipeline's rejection hot path.

    Half the cost of the keyword constructor (an open breaker rejects every call, and
    docs/architecture.md#rejections-do-no-io wants that to cost microseconds). The
    result is the same as ``cls(service=..., endpoint=..., operation=..., elapsed=...)``
    with the class's default detail; the caller may set further attributes
    (``retry_after``).
    """
    err = cls.__new__(cls)  # not _new: the TimeoutError subclasses need OSError.__new__
    err.__dict__ = {
        "service": service,
        "endpoint": endpoint,
        "operation": operation,
        "elapsed": elapsed,
    }
    return err


class RejectedError(ResilienceError):
    """The call was refused before any I/O: nothing reached the backend."""

    detail = "rejected before any I/O"


class CircuitOpenError(RejectedError):
    """The endpoint's circuit breaker is open (or its half-open probes are all taken).

    Attributes:
        retry_after: seconds until the breaker lets a probe through; 0 when unknown.
    """

    detail = "circuit open"
    retry_after: float = 0.0

    def __init__(
        self,
        detail: str | None = None,
        *,
        retry_after: float = 0.0,
        service: str | None = None,
        endpoint: str | None = None,
        operation: str | None = None,
        elapsed: float | None = None,
    ) -> None:
        # The pipeline never runs this (operation._circuit_open builds the error without
        # __init__), so the shared constructor's keyword forwarding costs nothing there.
        super().__init__(
            detail, service=service, endpoint=endpoint, operation=operation, elapsed=elapsed
        )
        self.retry_after = retry_after

    def __str__(self) -> str:
        return f"{super().__str__()}; retry after {self.retry_after * 1000:.0f} ms"

    def _extra_state(self) -> dict[str, object]:
        return {**super()._extra_state(), "retry_after": self.retry_after}


class BulkheadFullError(RejectedError):
    """The dependency's concurrency limit was reached and no permit came in time."""

    detail = "bulkhead full"


class DeadlineExceededError(RejectedError, TimeoutError):
    """The time budget was spent before the call (or its next attempt) could start."""

    detail = "deadline exceeded"


class BackendError(ResilienceError):
    """The backend or its driver failed; ``__cause__`` is the driver's exception."""

    detail = "backend failed"


class BackendTimeoutError(BackendError, TimeoutError):
    """The backend did not answer within the time budget."""

    detail = "backend timed out"


class BackendUnavailableError(BackendError):
    """The backend could not be reached: refused, reset, no live hosts, or closed."""

    detail = "backend unavailable"


class BackendProtocolError(BackendError):
    """The backend answered with something that is not its protocol."""

    detail = "backend protocol error"


class ConfigError(ResilienceError, ValueError):
    """A configuration value is invalid.

    The message names the environment variable or argument, the value given, and what
    is accepted, for example::

        RESILIENCE_MEMCACHE_TIMEOUT_MS='fast': expected a whole number of milliseconds >= 1
    """


class MissingDriverError(ConfigError, ImportError):
    """A client's driver is not installed; the message names the extra to install::

        memcache: the driver pymemcache is not installed: pip install 'resilience[memcache]'
    """
