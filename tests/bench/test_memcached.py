"""The memcached bench plugin's servers: on loopback and inside a network namespace."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from resilience.bench.memcached import KEY, PLUGIN, VALUE
from resilience.testing._server_fixtures import require_installed


def _read_key(host: str, port: int) -> Any:
    from pymemcache.client.base import Client

    client = Client((host, port), connect_timeout=1.0, timeout=1.0)
    try:
        return client.get(KEY)
    finally:
        client.close()


def test_start_server_in_a_namespace_listens_there_and_holds_the_key(
    netns: Callable[..., Any], tmp_path: Path
) -> None:
    """start_server(host=ns_ip, netns=name) runs memcached inside that namespace, bound to
    its address, with the benchmark key stored."""
    require_installed("memcached")
    ns = netns()
    server = PLUGIN.start_server(str(tmp_path), host=ns.ns_ip, netns=ns.name)
    try:
        assert server.host == ns.ns_ip
        pid = server.pid  # type: ignore[attr-defined]
        assert os.readlink(f"/proc/{pid}/ns/net") != os.readlink("/proc/self/ns/net")
        assert _read_key(server.host, server.port) == VALUE
    finally:
        server.stop()


def test_start_server_defaults_to_loopback_in_this_namespace(tmp_path: Path) -> None:
    """Without host or netns the server listens on 127.0.0.1 here, holding the key."""
    require_installed("memcached")
    server = PLUGIN.start_server(str(tmp_path))
    try:
        assert server.host == "127.0.0.1"
        assert _read_key(server.host, server.port) == VALUE
    finally:
        server.stop()
