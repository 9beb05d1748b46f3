"""memcached from the Debian package: one node (:class:`Memcached`) or N (:func:`cluster`).

Runs ``memcached -l 127.0.0.1 -p PORT -U 0 -m 64 -t 2`` in the foreground (``-u root``
when root, since memcached refuses to run as root without it). Ready when ``version``
answers on a raw socket. It keeps no data on disk: a restart comes back empty on the
same port.
"""

from __future__ import annotations

import os
import socket
from pathlib import Path

from resilience.servers._base import Cluster, NotInstalledError, Server, ServerSpec
from resilience.servers._ports import free_port
from resilience.servers.install import apt_install_server, find_binary

__all__ = ["SPEC", "Memcached", "cluster", "install", "is_installed"]

NAME = "memcached"
_CANDIDATES = ("/usr/bin/memcached", "memcached")


class Memcached(Server):
    """One memcached node on loopback.

    Args:
        data_dir: holds the log (memcached keeps no data on disk).
        port: TCP port; a free one when omitted.
        memory_mb: cache size (``-m``).
        threads: worker threads (``-t``).
        host: address to listen on (``-l``); loopback unless you run it in a namespace.
        netns: run inside this network namespace (``ip netns exec NAME``), with ``host``
            one of its addresses; see :class:`~resilience.servers._server.Server`.
    """

    def __init__(
        self,
        data_dir: Path,
        *,
        port: int | None = None,
        name: str = "memcached",
        memory_mb: int = 64,
        threads: int = 2,
        host: str = "127.0.0.1",
        netns: str | None = None,
    ) -> None:
        ports = {"client": port or free_port()}
        super().__init__(name, kind=NAME, data_dir=data_dir, ports=ports, host=host,
                         netns=netns)
        self.memory_mb = memory_mb
        self.threads = threads

    def command(self) -> list[str]:
        cmd = [str(_binary())]
        if os.geteuid() == 0:
            cmd += ["-u", "root"]
        cmd += ["-l", self.host, "-p", str(self.port), "-U", "0"]
        cmd += ["-m", str(self.memory_mb), "-t", str(self.threads)]
        return cmd

    def probe(self, timeout: float) -> bool:
        """``version`` gets a ``VERSION x.y.z`` line back within ``timeout`` seconds."""
        with socket.create_connection((self.host, self.port), timeout=timeout) as sock:
            sock.settimeout(timeout)
            sock.sendall(b"version\r\n")
            return sock.recv(64).startswith(b"VERSION ")


def cluster(data_dir: Path, nodes: int = 3, *, memory_mb: int = 64, threads: int = 2) -> Cluster:
    """``nodes`` independent memcached nodes (memcached nodes know nothing of each other;
    the client shards keys), each on its own free port, not started."""
    if nodes < 1:
        raise ValueError(f"nodes must be >= 1, got {nodes}")
    members = [
        Memcached(
            Path(data_dir) / f"node{i}", name=f"memcached-{i}", memory_mb=memory_mb, threads=threads
        )
        for i in range(1, nodes + 1)
    ]
    return Cluster("memcached", members)


def is_installed() -> bool:
    """True when a memcached binary is present."""
    try:
        _binary()
    except NotInstalledError:
        return False
    return True


def install() -> str:
    """Install the Debian package ``memcached`` if missing (idempotent)."""
    return apt_install_server(NAME, ["memcached"], is_installed, _binary)


def _binary() -> Path:
    return find_binary(NAME, _CANDIDATES)


def _create(work_dir: Path) -> Server | Cluster:
    return Memcached(work_dir)


SPEC = ServerSpec(
    name=NAME,
    description="memcached 1.6 from the Debian package",
    install=install,
    is_installed=is_installed,
    create=_create,
    start_timeout=10.0,
)
