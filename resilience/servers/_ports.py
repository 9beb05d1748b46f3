"""Free loopback ports for test servers.

A port comes from a random draw below the kernel's ephemeral range (read from
``/proc/sys/net/ipv4/ip_local_port_range``), checked by binding it, and is never handed
out twice in one process. Staying below the ephemeral range matters for restarts: while
a server is down its port stays free of the source ports of outgoing connections, so
``restart()`` on the same port does not meet "address already in use".
"""

from __future__ import annotations

import errno
import random
import socket
import threading
from pathlib import Path

__all__ = ["free_port", "free_ports", "port_in_use", "port_is_free"]

_LOW = 10_000
_FALLBACK_EPHEMERAL_START = 32_768
_handed_out: set[int] = set()
_lock = threading.Lock()
_rng = random.Random()  # its own source: a test seeding `random` must not make ports collide


def _ephemeral_start() -> int:
    try:
        text = Path("/proc/sys/net/ipv4/ip_local_port_range").read_text()
        return int(text.split()[0])
    except (OSError, ValueError, IndexError):
        return _FALLBACK_EPHEMERAL_START


def port_is_free(port: int, host: str = "127.0.0.1") -> bool:
    """True when ``host:port`` can be bound now (TCP), so a server could listen there."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        # SO_REUSEADDR like the servers themselves: a TIME_WAIT leftover does not block them.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def port_in_use(port: int, host: str = "127.0.0.1") -> bool | None:
    """True if something listens (or is bound) on ``host:port``, False if it is free,
    None when ``host`` is not an address of this network namespace (say, inside another
    namespace), so nothing can be told from here."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError as exc:
            if exc.errno == errno.EADDRNOTAVAIL:
                return None
            return True
    return False


def free_port(host: str = "127.0.0.1") -> int:
    """Return a TCP port on ``host`` that is free now and not yet handed out by this process.

    Raises:
        RuntimeError: no free port was found after many draws (the range is exhausted).
    """
    high = _ephemeral_start()
    if high <= _LOW + 100:  # an odd kernel range: fall back to the kernel's own choice
        high = 65_535
    with _lock:
        for _ in range(2_000):
            port = _rng.randrange(_LOW, high)
            if port in _handed_out or not port_is_free(port, host):
                continue
            _handed_out.add(port)
            return port
    raise RuntimeError(f"no free TCP port on {host} in {_LOW}..{high}")


def free_ports(count: int, host: str = "127.0.0.1") -> list[int]:
    """Return ``count`` distinct free ports (see :func:`free_port`)."""
    if count < 0:
        raise ValueError(f"count must be >= 0, got {count}")
    return [free_port(host) for _ in range(count)]
