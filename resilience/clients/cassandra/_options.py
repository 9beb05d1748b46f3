"""The Cassandra client's options: the shared ones with Cassandra's defaults, and its own."""

from __future__ import annotations

from dataclasses import dataclass

from resilience.config import (
    BreakerOptions,
    ClientOptions,
    HedgeOptions,
    group,
    option,
    register_client,
)

__all__ = ["CONSISTENCY_LEVELS", "CassandraOptions", "check_contact_point"]

CONSISTENCY_LEVELS = ("any", "one", "two", "three", "quorum", "all", "local_quorum",
                      "each_quorum", "local_one")


def check_contact_point(item: str) -> None:
    """A contact point is a host (an IP literal or a name) with an optional ``:port``."""
    host, sep, port = item.rpartition(":")
    if not sep or (item.count(":") > 1 and not item.startswith("[")):  # bare IPv6 / no port
        host, port = item, ""
    host = host.strip("[]")
    if not host or any(c.isspace() or c in "/@" for c in host):
        raise ValueError("a host or host:port with a port from 1 to 65535")
    if port and not (port.isdigit() and 1 <= int(port) <= 65535):
        raise ValueError("a host or host:port with a port from 1 to 65535")


@register_client("cassandra")
@dataclass(frozen=True, slots=True)
class CassandraOptions(ClientOptions):
    """The Cassandra wrapper (cassandra-driver)."""

    connect_timeout: float = option(
        2.0, "CONNECT_TIMEOUT_MS", "duration",
        "cap of one connection attempt", min=0.001
    )
    breaker: BreakerOptions = group(  # noqa: RUF009
        BreakerOptions, "BREAKER", "circuit breaker per host, and one for the cluster"
    )
    contact_points: tuple[str, ...] = option(
        ("127.0.0.1",), "CONTACT_POINTS", "list",
        "first hosts to connect to (IP literals, or names resolved within the connect "
        "budget), comma separated", client_only=True, validate=check_contact_point,
        item="host or host:port",
    )
    port: int = option(9042, "PORT", "int", "native protocol port of contact points without "
                       "one", min=1, max=65535, client_only=True)
    keyspace: str | None = option(None, "KEYSPACE", "str", "keyspace of the session",
                                  client_only=True, optional=True)
    local_dc: str | None = option(None, "LOCAL_DC", "str", "the data centre whose hosts "
                                  "are coordinators (default: the first contact point's)",
                                  client_only=True, optional=True)
    consistency: str = option(
        "local_one", "CONSISTENCY", "choice", "default consistency level",
        choices=CONSISTENCY_LEVELS, client_only=True,
    )
    serial_consistency: str = option(
        "serial", "SERIAL_CONSISTENCY", "choice",
        "consistency of the Paxos phase of conditional writes",
        choices=("serial", "local_serial"), client_only=True,
    )
    protocol_version: int = option(
        5, "PROTOCOL_VERSION", "int", "native protocol version, pinned (no downgrade on "
        "connect)", min=3, max=6, client_only=True,
    )
    username: str | None = option(None, "USERNAME", "str", "user for PasswordAuthenticator "
                                  "(default: no authentication)", client_only=True,
                                  optional=True)
    password: str | None = option(None, "PASSWORD", "str", "password of that user",
                                  client_only=True, optional=True, secret=True)
    reconnect_max: float = option(
        2.0, "RECONNECT_MAX_MS", "duration", "ceiling of the driver's exponential "
        "reconnection delay to a lost host (it never gives up)", min=0.01, client_only=True,
    )
    heartbeat_interval: float = option(
        5.0, "HEARTBEAT_MS", "duration", "idle heartbeat period and its timeout: how soon "
        "the driver replaces a dead connection", min=0.1, client_only=True,
    )
    executor_threads: int = option(
        2, "EXECUTOR_THREADS", "int", "driver worker threads (one multiplexed connection "
        "per host carries the requests)", min=1, max=64, client_only=True,
    )
    hedge: HedgeOptions = group(  # noqa: RUF009
        HedgeOptions, "HEDGE", "hedged SELECT (first page): a second request to another "
        "coordinator host (docs/hedging.md)"
    )
