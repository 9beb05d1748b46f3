"""The memcached client's options: the shared ones with memcached's defaults, and its own."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from resilience.config import (
    BreakerOptions,
    ClientOptions,
    HedgeOptions,
    check_host_port,
    group,
    option,
    register_client,
)

__all__ = ["MemcacheOptions"]


@register_client("memcache")
@dataclass(frozen=True, slots=True)
class MemcacheOptions(ClientOptions):
    """The memcached wrapper (pymemcache)."""

    timeout: float = option(
        0.1, "TIMEOUT_MS", "duration", "default time budget of one call", min=0.001
    )
    connect_timeout: float = option(
        0.1, "CONNECT_TIMEOUT_MS", "duration", "cap of one connection attempt", min=0.001
    )
    breaker: BreakerOptions = group(  # noqa: RUF009
        lambda: BreakerOptions(slow_call_duration=0.1), "BREAKER", "circuit breaker per node"
    )
    servers: tuple[str, ...] = option(
        ("127.0.0.1:11211",), "SERVERS", "list", "memcached nodes, host:port, comma separated",
        client_only=True, validate=check_host_port, item="host:port (port 1..65535)",
    )
    fail_open: bool = option(
        False, "FAIL_OPEN", "bool", "a failing read returns a miss (still counted as a failure)",
        client_only=True,
    )
    placement: Literal["ketama", "pymemcache"] = option(
        "ketama", "PLACEMENT", "choice",
        "key to node: ketama as libmemcached (PHP OPT_LIBKETAMA_COMPATIBLE), or as "
        "pymemcache HashClient", choices=("ketama", "pymemcache"), client_only=True,
    )
    pool_size: int = option(
        16, "POOL_SIZE", "int", "connections kept per node", min=1, client_only=True
    )
    hedge: HedgeOptions = group(  # noqa: RUF009
        HedgeOptions, "HEDGE", "hedged get: a second request on another connection to the"
        " key's node (docs/hedging.md)"
    )
