"""Deadlines across services: read a caller's budget from its headers, send ours on.

Inbound: `resilience.propagation.wsgi.DeadlineMiddleware` and
`resilience.propagation.asgi.DeadlineMiddleware`. Outbound:
`resilience.propagation.httpx` (transports), `resilience.propagation.requests`
(adapter), `resilience.propagation.grpc` (client interceptor). Each outbound module
imports its driver (extra ``resilience[propagation]``), so import the one you use;
this package and the middleware import none. Guide: docs/propagation.md.
"""

from __future__ import annotations

from resilience.propagation._headers import (
    CONNECT_HEADER,
    DEFAULT_HEADER,
    ENVOY_HEADER,
    GRPC_HEADER,
    Budget,
    MalformedHeaderError,
    format_grpc_timeout,
    format_ms,
    parse_grpc_timeout,
    parse_ms,
    read_budget,
)
from resilience.propagation._inbound import MARKER_HEADER, PropagationStats

__all__ = [
    "CONNECT_HEADER",
    "DEFAULT_HEADER",
    "ENVOY_HEADER",
    "GRPC_HEADER",
    "MARKER_HEADER",
    "Budget",
    "MalformedHeaderError",
    "PropagationStats",
    "format_grpc_timeout",
    "format_ms",
    "parse_grpc_timeout",
    "parse_ms",
    "read_budget",
]
