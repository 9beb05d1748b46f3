"""cassandra-driver exceptions -> resilience errors, and which failures a retry may repeat.

Two families reach us: ``cassandra.*`` exceptions, and the ``cassandra.protocol`` error
messages the driver raises as they are when the message has no exception of its own
(Overloaded, IsBootstrapping, ServerError, ...). Both are classified here; the driver
itself retries nothing (its retry policy is ``FallthroughRetryPolicy``).

Retry safety (:func:`retry_safe`) is decided per failure, from what the server says
about the outcome and from whether the statement is idempotent:

- not applied, safe for any statement: ``Unavailable`` (the coordinator refused before
  contacting a replica), ``NoHostAvailable`` whose every host error is one where the
  request was never sent (no connection, host down), a ``WriteTimeout`` of type
  ``BATCH_LOG`` (the batch log write failed, nothing applied), Overloaded and
  IsBootstrapping (refused), a connect that failed or has not finished;
- outcome unknown, safe only for an idempotent statement: a client timeout, a
  ``ReadTimeout``, a ``WriteTimeout`` of type SIMPLE, BATCH or UNLOGGED_BATCH, a
  connection lost after the request was written;
- never: a ``WriteTimeout`` of type COUNTER (a repeat counts twice) or CAS (the Paxos
  outcome is unknown: read the row at SERIAL to find out), and errors that are not
  transient (server errors, read/write failures, protocol errors).

The error says which: ``err.ambiguous`` is True when the statement was sent and may have
been applied.
"""

from __future__ import annotations

from functools import cache
from typing import Any

from resilience.clients._errormap import ErrorMap
from resilience.errors import (
    BackendError,
    BackendProtocolError,
    BackendTimeoutError,
    BackendUnavailableError,
    ConfigError,
)

__all__ = ["error_map", "never_sent", "retry_safe"]


@cache
def error_map() -> ErrorMap:
    """Driver exception -> resilience error, most specific first (a rule to None is the
    caller's mistake: raised unchanged, not retried, not counted against a host)."""
    import cassandra
    from cassandra import protocol
    from cassandra.cluster import NoHostAvailable
    from cassandra.connection import (
        ConnectionBusy,
        ConnectionException,
        CrcMismatchException,
        ProtocolError,
        ProtocolVersionUnsupported,
    )
    from cassandra.pool import NoConnectionsAvailable

    return ErrorMap([
        # The caller's mistakes: bad CQL, unknown table, no permission, wrong bind values,
        # DDL of something that exists (an outcome), a UDF that raised.
        ((cassandra.RequestValidationException, protocol.RequestValidationException,
          cassandra.FunctionFailure, cassandra.UnsupportedOperation, TypeError, ValueError,
          KeyError), None, "rejected by the server as the caller's mistake"),
        ((cassandra.AuthenticationFailed, protocol.BadCredentials), ConfigError,
         "authentication failed"),
        (cassandra.OperationTimedOut, BackendTimeoutError, "client timeout"),
        (cassandra.Timeout, BackendTimeoutError, "coordinator timeout"),
        ((cassandra.Unavailable, cassandra.CDCWriteFailure, protocol.CDCWriteException),
         BackendUnavailableError, "not enough replicas alive"),
        ((protocol.OverloadedErrorMessage, protocol.IsBootstrappingErrorMessage),
         BackendUnavailableError, "coordinator refused the request"),
        ((ProtocolVersionUnsupported, CrcMismatchException, ProtocolError,
          protocol.ProtocolException), BackendProtocolError, "protocol error"),
        (TimeoutError, BackendTimeoutError, "socket timeout"),
        ((NoHostAvailable, ConnectionException, ConnectionBusy, NoConnectionsAvailable,
          OSError), BackendUnavailableError, "no connection"),
        ((cassandra.CoordinationFailure, protocol.ErrorMessage), BackendError,
         "server error"),
        (cassandra.DriverException, BackendUnavailableError, "driver error"),
    ])


def never_sent(exc: BaseException) -> bool:
    """Whether ``exc`` proves the request never left this process (any host may take it)."""
    from cassandra.cluster import NoHostAvailable
    from cassandra.connection import ConnectionBusy, ConnectionException
    from cassandra.pool import NoConnectionsAvailable

    if isinstance(exc, (NoConnectionsAvailable, ConnectionBusy)):
        return True
    if isinstance(exc, NoHostAvailable):
        errors = list(exc.errors.values()) if exc.errors else []
        return all(never_sent(e) for e in errors)
    if isinstance(exc, ConnectionException):
        # The driver's own words when it did not send: no pool, pool shut down.
        text = str(exc)
        return "marked down" in text or "Pool is shutdown" in text
    return False


def retry_safe(exc: BaseException, idempotent: bool) -> tuple[bool, bool]:
    """``(may retry, ambiguous)`` for the driver's ``exc`` on a statement that is or is
    not ``idempotent`` (see the module docstring)."""
    import cassandra
    from cassandra import protocol

    if never_sent(exc) or isinstance(exc, (cassandra.Unavailable, cassandra.CDCWriteFailure,
                                           protocol.OverloadedErrorMessage,
                                           protocol.IsBootstrappingErrorMessage)):
        return True, False
    if isinstance(exc, cassandra.WriteTimeout):
        kind = exc.write_type
        if kind == cassandra.WriteType.BATCH_LOG:
            return True, False
        if kind in (cassandra.WriteType.COUNTER, cassandra.WriteType.CAS):
            return False, True
        return idempotent, True
    if isinstance(exc, cassandra.ReadTimeout):
        return idempotent, False
    if isinstance(exc, _ConnectPending):
        return True, False
    return idempotent, True


class _ConnectPending(Exception):
    """The session is still connecting (or its connect failed): nothing was sent."""


@cache
def _pending_class() -> type[Exception]:
    from cassandra import OperationTimedOut

    class ConnectPending(_ConnectPending, OperationTimedOut):  # type: ignore[misc]
        """Not connected within the call's time: a client timeout that sent nothing."""

    return ConnectPending


def connect_pending(detail: str) -> Exception:
    """The exception a call raises when the session is not connected within its time."""
    return _pending_class()(detail)


def describe(exc: Any) -> str:
    """One line for a driver exception (NoHostAvailable lists its hosts' errors)."""
    errors = getattr(exc, "errors", None)
    if isinstance(errors, dict) and errors:
        inner = "; ".join(f"{host}: {type(e).__name__}: {e}" for host, e in errors.items())
        return f"{type(exc).__name__}: {inner}"
    return f"{type(exc).__name__}: {exc}"
