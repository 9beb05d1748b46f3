"""What the status page shows: every breaker of the process, read at request time.

"Every breaker" is every breaker of every open client (:func:`resilience.clients.live_clients`,
a weak list the clients join at construction: no registration step, no cost on a call,
no leak) plus the `Policy` objects given to the app explicitly (a bare policy is not a
client and is not listed anywhere process-wide).

Reading is cheap and never blocks a call: a breaker's ``snapshot`` takes its short lock
once, a retry budget's ``balance`` takes its lock once, a bulkhead's use is one read.
Reading may move an OPEN breaker whose interval has passed to HALF_OPEN, exactly as the
next call would have (see `resilience.core.breaker`).
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator
from typing import Any

from resilience.clients import live_clients
from resilience.core.policy import Policy

__all__ = ["FORCE_ACTIONS", "check_policies", "collect", "force", "targets"]

FORCE_ACTIONS = ("open", "closed", "reset")
"""What an operator may do to a breaker: force_open, force_closed, reset."""


class _Target:
    """One client or policy as the page sees it: its service, its breakers (with each
    one's bulkhead), its retry budget and its clock."""

    __slots__ = ("budget", "entries", "error", "kind", "monotonic", "service")

    def __init__(self, kind: str, service: str, entries: list[tuple[Any, Any]],
                 budget: Any, monotonic: Any, error: str | None = None) -> None:
        self.kind = kind
        self.service = service
        self.entries = entries  # (breaker, bulkhead or None)
        self.budget = budget
        self.monotonic = monotonic
        self.error = error  # why this one could not be read (the others still are)


def _broken(kind: str, obj: Any, exc: Exception) -> _Target:
    service = str(getattr(obj, "service", "") or type(obj).__name__)
    return _Target(kind, service, [], None, time.monotonic, f"{type(exc).__name__}: {exc}")


def _of_client(client: Any) -> _Target:
    entries = [(client.breaker(endpoint), client.bulkhead(endpoint))
               for endpoint in client.endpoints]
    return _Target("client", client.service, entries, client.retry_budget,
                   client.clock.monotonic)


def _of_policy(policy: Any) -> _Target:
    op = policy.operation
    return _Target("policy", op.service, [(policy.breaker, op.bulkhead)], op.budget,
                   op.monotonic)


def _read(kind: str, obj: Any) -> _Target:
    try:
        return _of_client(obj) if kind == "client" else _of_policy(obj)
    except Exception as exc:  # one unreadable client must not blank the whole page
        return _broken(kind, obj, exc)


def check_policies(policies: Iterable[Any]) -> tuple[Policy, ...]:
    """``policies`` as a tuple, each checked to be a `Policy`.

    Raises:
        TypeError: naming the position and type of the first item that is not.
    """
    out = tuple(policies)
    for i, policy in enumerate(out):
        if not isinstance(policy, Policy):
            raise TypeError(f"status policies[{i}]: expected a resilience.Policy, got"
                            f" {type(policy).__name__} (clients are listed without this)")
    return out


def targets(policies: Iterable[Any] = ()) -> Iterator[_Target]:
    """Every open client of the process (sorted by service), then ``policies``.

    Raises:
        TypeError: an item of ``policies`` is not a `Policy` (clients need no listing).
    """
    policies = check_policies(policies)
    found = [_read("client", c) for c in live_clients()]
    found.sort(key=lambda t: t.service)
    yield from found
    for policy in policies:
        yield _read("policy", policy)


def _service(target: _Target, wall: float) -> dict[str, Any]:
    doc: dict[str, Any] = {"service": target.service, "kind": target.kind,
                           "retry_budget": None, "breakers": []}
    if target.error is not None:
        return {**doc, "error": target.error}
    try:
        now = target.monotonic()
        budget = target.budget
        if budget is not None:
            doc["retry_budget"] = {"balance": budget.balance(now), "refused": budget.refused}
        doc["breakers"] = [_breaker(b, h, now, wall) for b, h in target.entries]
    except Exception as exc:  # as in _read: report it, show the rest
        return {**doc, "retry_budget": None, "breakers": [],
                "error": f"{type(exc).__name__}: {exc}"}
    return doc


def _breaker(breaker: Any, bulkhead: Any, now: float, wall: float) -> dict[str, Any]:
    snap = breaker.snapshot(now)
    options = breaker.options
    count = options.window == "count"
    retry_after = snap["retry_after"]
    return {
        "endpoint": snap["name"],
        "state": snap["state"],
        "failure_rate": snap["failure_rate"],
        "slow_call_rate": snap["slow_call_rate"],
        "failure_rate_threshold": options.failure_rate,
        "slow_call_rate_threshold": options.slow_call_rate,
        "calls": snap["calls"],
        "failures": snap["failures"],
        "slow_calls": snap["slow_calls"],
        "window": snap["window"],
        "window_size": options.window_size if count else None,
        "window_seconds": None if count else options.window_duration,
        # Count window: how full it is. Time window: how close to holding enough calls
        # for a verdict (it has no fixed capacity).
        "window_fill": min(1.0, snap["calls"] / (options.window_size if count
                                                 else max(1, snap["minimum_calls"]))),
        "minimum_calls": snap["minimum_calls"],
        "retry_after": retry_after,
        "open_until": wall + retry_after if snap["state"] == "open" else None,
        "open_interval": snap["open_interval"],
        "bulkhead": None if bulkhead is None else {
            "in_use": bulkhead.in_use, "max_concurrent": bulkhead.max_concurrent},
    }


def collect(policies: Iterable[Any] = (), *, refresh: float | None = None,
            forcing: bool = False) -> dict[str, Any]:
    """The JSON-able view of every breaker (the ``status.json`` document).

    Keys: ``time`` (Unix seconds), ``refresh`` (seconds between page refreshes, or
    None), ``forcing`` (whether forcing is enabled), ``services``: a list, one entry per
    client or policy: ``service``, ``kind`` (``client``/``policy``), ``retry_budget``
    (``balance``: retries still allowed now, ``refused``: withdrawals refused so far;
    None when the client does not retry) and ``breakers``: per endpoint its ``state``
    (a `BreakerState` value), ``failure_rate``/``slow_call_rate`` and their thresholds,
    ``calls``/``failures``/``slow_calls`` in the window, ``window_fill`` (0..1),
    ``retry_after`` (seconds until a probe may pass; 0 unless open), ``open_until``
    (Unix seconds, or None unless open) and ``bulkhead`` (``in_use``/``max_concurrent``
    or None for no limit). A client or policy that cannot be read has an ``error``
    (the exception's type and message) and no breakers; the others are still shown.
    """
    wall = time.time()
    services = [_service(target, wall) for target in targets(policies)]
    return {"time": wall, "refresh": refresh, "forcing": forcing, "services": services}


def force(service: str, endpoint: str, action: str, policies: Iterable[Any] = ()) -> int:
    """Apply ``action`` (one of `FORCE_ACTIONS`) to every breaker of ``service`` at
    ``endpoint``; returns how many breakers it touched (0: none matched).

    Raises:
        ValueError: ``action`` is not one of `FORCE_ACTIONS`.
    """
    if action not in FORCE_ACTIONS:
        raise ValueError(f"action {action!r}: expected one of {', '.join(FORCE_ACTIONS)}")
    seen: set[int] = set()  # clients sharing a registry share breakers: act once
    for target in targets(policies):
        if target.service != service:
            continue
        for breaker, _bulkhead in target.entries:
            if breaker.name != endpoint or id(breaker) in seen:
                continue
            seen.add(id(breaker))
            now = target.monotonic()
            if action == "open":
                breaker.force_open(now)
            elif action == "closed":
                breaker.force_closed(now)
            else:
                breaker.reset(now)
    return len(seen)
