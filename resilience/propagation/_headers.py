"""Deadline headers: parse a caller's budget, format the one we send; pure, no I/O.

Inbound, a request may carry its caller's remaining budget in several headers:

- ``grpc-timeout`` (gRPC over HTTP/2, honoured only for ``application/grpc*`` content):
  1 to 8 ASCII digits and a unit, ``H`` hours, ``M`` minutes, ``S`` seconds, ``m``
  milliseconds, ``u`` microseconds, ``n`` nanoseconds (``"250m"``, ``"3S"``).
- ``connect-timeout-ms`` (Connect protocol) and ``x-envoy-expected-rq-timeout-ms``
  (Envoy): whole milliseconds.
- ``request-timeout-ms``, this project's own (the name is configurable): whole
  milliseconds; the outbound transports send it.

`read_budget` takes the smallest of those present and well formed; a malformed one
(empty, signed, fractional, a wrong unit, more digits than allowed) is ignored and
reported by name, never an error: a caller's bad header must not turn into a 500.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

__all__ = [
    "CONNECT_HEADER",
    "DEFAULT_HEADER",
    "ENVOY_HEADER",
    "GRPC_HEADER",
    "Budget",
    "MalformedHeaderError",
    "format_grpc_timeout",
    "format_ms",
    "parse_grpc_timeout",
    "parse_ms",
    "read_budget",
]

GRPC_HEADER = "grpc-timeout"
CONNECT_HEADER = "connect-timeout-ms"
ENVOY_HEADER = "x-envoy-expected-rq-timeout-ms"
DEFAULT_HEADER = "request-timeout-ms"

#: gRPC's limit: "TimeoutValue -> {positive integer as ASCII string of at most 8 digits}".
GRPC_MAX_DIGITS = 8
#: Whole milliseconds up to 12 digits (31 years); more is treated as malformed, so a
#: hostile header cannot make us parse an arbitrarily long number.
MS_MAX_DIGITS = 12

_GRPC_UNITS = {"H": 3600.0, "M": 60.0, "S": 1.0, "m": 1e-3, "u": 1e-6, "n": 1e-9}
# Finest first: formatting picks the first unit whose count fits in 8 digits.
_GRPC_FORMAT = (("n", 1e9), ("u", 1e6), ("m", 1e3), ("S", 1.0), ("M", 1 / 60), ("H", 1 / 3600))


class MalformedHeaderError(ValueError):
    """A deadline header's value is not in its format; the message names the header."""


def _digits(name: str, text: str, limit: int) -> int:
    # str.isdigit() accepts non-ASCII digits ("²", "٣"); the wire format does not.
    if not text or len(text) > limit or not text.isascii() or not text.isdigit():
        raise MalformedHeaderError(
            f"{name}: {text[:40]!r} is not 1 to {limit} ASCII digits")
    return int(text)


def parse_grpc_timeout(value: str) -> float:
    """Seconds in a ``grpc-timeout`` value such as ``"250m"``; raises MalformedHeaderError."""
    value = value.strip()
    unit = _GRPC_UNITS.get(value[-1:])
    if unit is None:
        raise MalformedHeaderError(
            f"{GRPC_HEADER}: {value[:40]!r} does not end in a unit (H, M, S, m, u, n)")
    return _digits(GRPC_HEADER, value[:-1], GRPC_MAX_DIGITS) * unit


def parse_ms(value: str, name: str = DEFAULT_HEADER) -> float:
    """Seconds in a whole-milliseconds header value; raises MalformedHeaderError naming it."""
    return _digits(name, value.strip(), MS_MAX_DIGITS) / 1000.0


def format_grpc_timeout(seconds: float) -> str:
    """``seconds`` as a ``grpc-timeout`` value in the finest unit that fits in 8 digits.

    Rounds down (a callee is never granted more than the caller has), but never to 0
    for a positive budget. Raises ValueError for a budget that is not > 0.
    """
    if not seconds > 0:
        raise ValueError(f"format_grpc_timeout({seconds!r}): expected seconds > 0")
    for unit, per_second in _GRPC_FORMAT:
        count = int(seconds * per_second)
        if count < 10**GRPC_MAX_DIGITS:
            return f"{max(count, 1)}{unit}"
    return f"{10**GRPC_MAX_DIGITS - 1}H"  # 11,415 years: as good as no limit


def format_ms(seconds: float) -> str | None:
    """``seconds`` as whole milliseconds, rounded down; None when under 1 ms (spent)."""
    ms = int(seconds * 1000.0) if seconds > 0 else 0
    return str(min(ms, 10**MS_MAX_DIGITS - 1)) if ms >= 1 else None


@dataclass(frozen=True, slots=True)
class Budget:
    """What a request's headers say about its caller's budget.

    Attributes:
        seconds: the smallest well-formed budget among the headers, or None if none.
        source: the header it came from, or None.
        malformed: names of the headers present but malformed (ignored).
    """

    seconds: float | None
    source: str | None
    malformed: tuple[str, ...]


def read_budget(
    headers: Iterable[tuple[str, str]],
    *,
    own_header: str = DEFAULT_HEADER,
    grpc: bool = False,
) -> Budget:
    """The caller's budget from ``headers`` (name, value) pairs; names are matched
    case-insensitively.

    Args:
        headers: the request's headers.
        own_header: this project's header name (``request-timeout-ms`` unless configured).
        grpc: whether the request is gRPC content; only then is ``grpc-timeout`` read.
    """
    ms_headers = {CONNECT_HEADER, ENVOY_HEADER, own_header.lower()}
    best: float | None = None
    source: str | None = None
    malformed: list[str] = []
    for raw_name, value in headers:
        name = raw_name.lower()
        try:
            if name in ms_headers:
                seconds = parse_ms(value, name)
            elif grpc and name == GRPC_HEADER:
                seconds = parse_grpc_timeout(value)
            else:
                continue
        except MalformedHeaderError:
            malformed.append(name)
            continue
        if best is None or seconds < best:
            best, source = seconds, name
    return Budget(best, source, tuple(malformed))
