"""Options for every policy and client, and their resolution from the environment.

Options are frozen dataclasses. Durations are float seconds in Python and whole
milliseconds in the environment (``timeout`` <-> ``TIMEOUT_MS``). Every field carries
its environment key and its documentation in ``field(metadata=...)``: this module is
the one place the option table lives (the README table is checked against it).

Environment variables (contract 10 of DESIGN.md)::

    RESILIENCE_<CLIENT>_<KEY>            for example RESILIENCE_MEMCACHE_TIMEOUT_MS=50
    RESILIENCE_<CLIENT>_<NAME>_<KEY>     a named instance: RESILIENCE_MEMCACHE_SESSIONS_TIMEOUT_MS
    RESILIENCE_DEFAULT_<KEY>             keys shared by every client (not client-only keys)

Precedence: constructor argument > named instance > client > RESILIENCE_DEFAULT_ >
built-in default. The environment is read when a wrapper is constructed, never at import.

Nested options flatten with an underscore: ``BreakerOptions.failure_rate`` is the
constructor argument ``breaker_failure_rate`` and the key ``BREAKER_FAILURE_RATE``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

__all__ = [
    "BreakerOptions",
    "BulkheadOptions",
    "ClientOptions",
    "MemcacheOptions",
    "RetryOptions",
]

# Value kinds understood by the resolver:
#   "duration": env whole milliseconds (key ends in _MS), Python float seconds
#   "int", "float", "ratio" (float 0..1), "bool", "list" (comma separated), "str",
#   "choice" (metadata "choices")


def _opt(default: Any, env: str, kind: str, doc: str, **meta: Any) -> Any:
    return field(default=default, metadata={"env": env, "kind": kind, "doc": doc, **meta})


def _nested(factory: Any, env: str, doc: str) -> Any:
    return field(default_factory=factory, metadata={"env": env, "kind": "nested", "doc": doc})


@dataclass(frozen=True, slots=True)
class BreakerOptions:
    """Circuit breaker per endpoint (contract 5)."""

    enabled: bool = _opt(True, "ENABLED", "bool", "turn the breaker off entirely")
    window: Literal["count", "time"] = _opt(
        "count", "WINDOW", "choice", "sliding window kind", choices=("count", "time")
    )
    window_size: int = _opt(20, "WINDOW_SIZE", "int", "calls in a count window", min=1)
    window_duration: float = _opt(
        10.0, "WINDOW_MS", "duration", "length of a time window", min=0.001
    )
    failure_rate: float = _opt(
        0.5, "FAILURE_RATE", "ratio", "failure share that opens the breaker (0..1]"
    )
    slow_call_rate: float = _opt(
        1.0, "SLOW_CALL_RATE", "ratio", "slow-call share that opens the breaker (0..1]"
    )
    slow_call_duration: float = _opt(
        1.0, "SLOW_CALL_MS", "duration", "a call at least this long counts as slow", min=0.001
    )
    minimum_calls: int = _opt(
        10, "MIN_CALLS", "int", "calls in the window before rates are judged", min=1
    )
    half_open_probes: int = _opt(
        1, "HALF_OPEN_PROBES", "int", "concurrent trial calls while half-open", min=1
    )
    open_duration: float = _opt(
        1.0, "OPEN_MS", "duration", "first open interval before a probe", min=0.001
    )
    max_open_duration: float = _opt(
        30.0, "MAX_OPEN_MS", "duration", "cap of the growing open interval", min=0.001
    )
    open_backoff: float = _opt(
        2.0, "OPEN_BACKOFF", "float", "open interval multiplier per failed probe", min=1.0
    )
    jitter: float = _opt(0.1, "JITTER", "ratio", "random share added to the open interval")


@dataclass(frozen=True, slots=True)
class RetryOptions:
    """Retries of idempotent operations on transient errors (contract 6)."""

    attempts: int = _opt(2, "ATTEMPTS", "int", "total attempts; 1 turns retry off", min=1)
    backoff: float = _opt(
        0.01, "BACKOFF_MS", "duration", "base of the full-jitter exponential backoff", min=0.0
    )
    max_backoff: float = _opt(
        0.2, "MAX_BACKOFF_MS", "duration", "cap of one backoff sleep", min=0.0
    )
    budget_ratio: float = _opt(
        0.2, "BUDGET_RATIO", "ratio", "retries allowed as a share of recent calls"
    )
    budget_min_per_second: float = _opt(
        5.0, "BUDGET_MIN_PER_S", "float", "retries always allowed per second", min=0.0
    )
    budget_window: float = _opt(
        10.0, "BUDGET_WINDOW_MS", "duration", "how far back 'recent calls' reaches", min=0.001
    )


@dataclass(frozen=True, slots=True)
class BulkheadOptions:
    """Concurrency limit per dependency."""

    max_concurrent: int = _opt(
        0, "MAX_CONCURRENT", "int", "calls in flight at once; 0 means no limit", min=0
    )
    max_wait: float = _opt(
        0.0, "MAX_WAIT_MS", "duration", "wait for a permit at most this long; 0 rejects at once",
        min=0.0,
    )


@dataclass(frozen=True, slots=True)
class ClientOptions:
    """What every client wrapper shares. Client option classes subclass this."""

    timeout: float = _opt(
        1.0, "TIMEOUT_MS", "duration", "default time budget of one call", min=0.001
    )
    connect_timeout: float = _opt(
        1.0, "CONNECT_TIMEOUT_MS", "duration", "cap of one connection attempt", min=0.001
    )
    breaker: BreakerOptions = _nested(BreakerOptions, "BREAKER", "circuit breaker")
    retry: RetryOptions = _nested(RetryOptions, "RETRY", "retry")
    bulkhead: BulkheadOptions = _nested(BulkheadOptions, "BULKHEAD", "bulkhead")


@dataclass(frozen=True, slots=True)
class MemcacheOptions(ClientOptions):
    """The memcached wrapper (pymemcache)."""

    timeout: float = _opt(
        0.1, "TIMEOUT_MS", "duration", "default time budget of one call", min=0.001
    )
    connect_timeout: float = _opt(
        0.1, "CONNECT_TIMEOUT_MS", "duration", "cap of one connection attempt", min=0.001
    )
    breaker: BreakerOptions = _nested(
        lambda: BreakerOptions(slow_call_duration=0.05), "BREAKER", "circuit breaker per node"
    )
    servers: tuple[str, ...] = _opt(
        ("127.0.0.1:11211",), "SERVERS", "list", "memcached nodes, host:port, comma separated",
        client_only=True,
    )
    fail_open: bool = _opt(
        False, "FAIL_OPEN", "bool", "a failing read returns a miss (still counted as a failure)",
        client_only=True,
    )
    pool_size: int = _opt(
        16, "POOL_SIZE", "int", "connections kept per node", min=1, client_only=True
    )
