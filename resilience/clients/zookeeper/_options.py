"""The ZooKeeper client's options: the shared ones with ZooKeeper's defaults, and its own."""

from __future__ import annotations

from dataclasses import dataclass

from resilience.config import ClientOptions, check_host_port, option, register_client

__all__ = ["ZooKeeperOptions"]


def _check_chroot(value: str) -> None:
    if value and (not value.startswith("/") or value.endswith("/")):
        raise ValueError("a path such as /app (starts with /, no trailing /)")


@register_client("zookeeper")
@dataclass(frozen=True, slots=True)
class ZooKeeperOptions(ClientOptions):
    """The ZooKeeper wrapper (kazoo): one session with the ensemble."""

    hosts: tuple[str, ...] = option(
        ("127.0.0.1:2181",), "HOSTS", "list",
        "ensemble members, host:port, comma separated (one session, one breaker)",
        client_only=True, validate=check_host_port, item="host:port (port 1..65535)",
    )
    chroot: str = option(
        "", "CHROOT", "str", "path every other path is relative to, e.g. /app (empty: /)",
        client_only=True, optional=True,
    )
    session_timeout: float = option(
        10.0, "SESSION_TIMEOUT_MS", "duration",
        "requested session timeout (the server clamps it to 2..20 ticks); a lost "
        "connection is noticed after 2/3 of it", min=0.1, client_only=True,
    )
    auth: str = option(
        "", "AUTH", "str", "scheme:credential added to the session, e.g. digest:user:pw",
        client_only=True, optional=True, secret=True,
    )
    reconnect_max_delay: float = option(
        1.0, "RECONNECT_MAX_DELAY_MS", "duration",
        "cap of the pause between the driver's reconnect attempts (kazoo: 3600 s)",
        min=0.01, client_only=True,
    )
