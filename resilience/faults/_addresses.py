"""Where fault traffic may go: loopback, or a network namespace this toolkit created.

The toolkit never sends a byte to another machine. :func:`check_address` is the single
gate: the proxy calls it for its upstream and its listen address, and
:mod:`resilience.faults.netns` registers the private networks of the namespaces it
creates (a veth pair that exists only between this host and that namespace).
"""

from __future__ import annotations

import ipaddress
import subprocess

__all__ = ["allow_network", "check_address", "disallow_network", "parse_hostport"]

_ALLOWED: set[ipaddress.IPv4Network] = set()
# Namespaces made by another process of ours (e.g. a test that started `resilience proxy`)
# are recognised by this name prefix.
NS_PREFIX = "rfault-"


def allow_network(network: str) -> None:
    """Allow traffic to ``network`` (a namespace's private veth network)."""
    _ALLOWED.add(ipaddress.IPv4Network(network, strict=False))


def disallow_network(network: str) -> None:
    """Forget a network registered with :func:`allow_network` (namespace torn down)."""
    _ALLOWED.discard(ipaddress.IPv4Network(network, strict=False))


def _in_our_namespaces(ip: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    """Is ``ip`` assigned inside a namespace named with our prefix (another process)?"""
    try:
        names = subprocess.run(
            ["ip", "netns", "list"], capture_output=True, text=True, timeout=5, check=False
        ).stdout.split()
        for ns in (n for n in names if n.startswith(NS_PREFIX)):
            out = subprocess.run(
                ["ip", "-n", ns, "-o", "addr"], capture_output=True, text=True,
                timeout=5, check=False,
            ).stdout
            if f" {ip}/" in out:
                return True
    except (OSError, subprocess.TimeoutExpired):
        return False
    return False


def check_address(host: str, what: str = "address") -> str:
    """Return ``host`` as an IP literal if traffic to it is allowed.

    Allowed: loopback (``localhost`` means 127.0.0.1), an address in a network
    registered by a namespace of this process, or an address inside a namespace named
    ``rfault-*``.

    Raises:
        ValueError: ``host`` is not an IP literal, or is outside those networks.
    """
    literal = "127.0.0.1" if host == "localhost" else host
    try:
        ip = ipaddress.ip_address(literal)
    except ValueError:
        raise ValueError(
            f"{what} {host!r} is not an IP address; give a loopback address such as "
            "127.0.0.1 (no DNS)"
        ) from None
    if ip.is_loopback or any(ip in net for net in _ALLOWED) or _in_our_namespaces(ip):
        return literal
    raise ValueError(
        f"{what} {host!r} is not allowed: traffic goes only to loopback or to a network "
        "namespace created by resilience.faults"
    )


def parse_hostport(value: str | tuple[str, int], what: str = "address") -> tuple[str, int]:
    """``"127.0.0.1:11211"`` or ``("127.0.0.1", 11211)`` -> checked ``(host, port)``.

    Raises:
        ValueError: malformed, bad port, or a host :func:`check_address` refuses.
    """
    if isinstance(value, tuple):
        host, port = value
    else:
        host, sep, port_s = value.rpartition(":")
        host = host.strip("[]")
        if not sep or not host:
            raise ValueError(f"{what} {value!r}: expected HOST:PORT, e.g. 127.0.0.1:11211")
        try:
            port = int(port_s)
        except ValueError:
            raise ValueError(f"{what} {value!r}: port {port_s!r} is not a number") from None
    if not 0 <= port <= 65535:
        raise ValueError(f"{what} port {port!r} is out of range 0..65535")
    return check_address(host, what), port
