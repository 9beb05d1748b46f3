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


def test_the_get_many_rows_compare_the_wrapper_with_hashclient_over_three_nodes(
        tmp_path: Path) -> None:
    """The get_many row starts two more nodes, reads 10 keys spread over all three (hits
    for both subjects, or it raises), and reports HashClient as the baseline."""
    from resilience.bench.memcached import MANY_OP, _get_many_rows

    require_installed("memcached")
    server = PLUGIN.start_server(str(tmp_path))
    try:
        rows = _get_many_rows(server.host, server.port, cycles=2, per_round=3)
    finally:
        server.stop()
    assert [(r.operation, r.subject) for r in rows] == [(MANY_OP, "HashClient"),
                                                        (MANY_OP, "wrapper")]
    assert rows[0].ratio == 1.0 and rows[1].median_us > 0 and rows[1].cpu_us > 0


def test_the_get_many_keys_reach_every_node_whatever_the_ports() -> None:
    """The harness picks ports at random and both placements hash them: the keys are
    chosen per set of nodes (a fixed list once left a node out, in CI)."""
    from pymemcache.client.hash import HashClient

    from resilience.bench.memcached import spread_keys
    from resilience.clients.memcache import Memcache

    for ports in ((26045, 11422, 28635), (11211, 11212, 11213), (40001, 40002, 40003)):
        nodes = [("127.0.0.1", p) for p in ports]
        hashed = HashClient(nodes)
        cache = Memcache([f"{h}:{p}" for h, p in nodes], environ={})
        owners = (hashed.hasher.get_node, cache.node_for)
        keys = spread_keys(owners, 3)
        assert len(keys) == 10 == len(set(keys))
        for owner in owners:
            assert len({owner(k) for k in keys}) == 3, (ports, keys)
