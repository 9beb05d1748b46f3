"""One agent in this process against the real standalone ZooKeeper: malformed data is
rejected and the previous data kept; a deleted node undoes control; the cache file
keeps the last good data across a restart while ZooKeeper cannot be reached; the
``resilience control`` command checks every key before it writes."""

from __future__ import annotations

import json
import socket
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import CollectorRegistry, generate_latest

from resilience.cli import main
from resilience.clients.memcache import Memcache
from resilience.clients.zookeeper import ZooKeeper
from resilience.control import ControlAgent, dumps, node_path
from resilience.core.breaker import BreakerState
from resilience.testing._server_fixtures import require_driver

from ._fleet import wait_until


@pytest.fixture
def service() -> str:
    return f"svc-{uuid.uuid4().hex[:8]}"


@pytest.fixture
def zk(zookeeper: Any) -> Iterator[ZooKeeper]:
    require_driver("zookeeper", "kazoo")
    with ZooKeeper(zookeeper.address, timeout=2.0, connect_timeout=5.0, environ={}) as client:
        yield client


@pytest.fixture
def cache(memcached: Any) -> Iterator[Memcache]:
    with Memcache([memcached.address], timeout=0.5, environ={}) as c:
        yield c


def _state(cache: Memcache) -> BreakerState:
    return cache.breaker(cache.endpoints[0]).state(time.monotonic())


def test_malformed_data_is_rejected_and_previous_kept(zk: ZooKeeper, cache: Memcache,
                                                      service: str) -> None:
    path = node_path(service)
    zk.create(path, dumps({"memcache.breaker": "forced_open"}), makepath=True)
    with ControlAgent(zk, service, poll_interval=0.1, clients=lambda: [cache]).start() as agent:
        wait_until(lambda: _state(cache) is BreakerState.FORCED_OPEN, 5.0, "forced open")
        good = agent.version
        zk.set(path, b'{"memcache.breaker": "open", "memcache.timeout_ms": 5}')
        wait_until(lambda: agent.rejected == 1, 5.0, "rejection")
        assert "'memcache.breaker'" in str(agent.last_error) and "forced_open" in str(
            agent.last_error)
        assert agent.version == good and agent.settings == {"memcache.breaker": "forced_open"}
        assert _state(cache) is BreakerState.FORCED_OPEN and cache.options.timeout == 0.5
        time.sleep(0.3)  # polls see the same bad version: still one rejection
        assert agent.rejected == 1 and agent.age() < 1.0
        registry = CollectorRegistry()
        registry.register(agent)
        scraped = generate_latest(registry).decode()
        assert f'resilience_control_rejected_total{{service="{service}"}} 1.0' in scraped
        assert f'resilience_control_version{{service="{service}"}} {float(good or 0)}' in scraped
        zk.delete(path)
        wait_until(lambda: _state(cache) is BreakerState.CLOSED, 5.0, "undone")
        assert agent.status()["settings"] == {} and agent.status()["version"] == 0


def _refused() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return f"127.0.0.1:{s.getsockname()[1]}"  # closed again: connects are refused


def test_cache_file_keeps_data_across_a_restart(zk: ZooKeeper, memcached: Any,
                                                service: str, tmp_path: Path) -> None:
    file = tmp_path / "control.json"
    zk.create(node_path(service), dumps({"memcache.timeout_ms": 42}), makepath=True)
    first = Memcache([memcached.address], timeout=0.5, environ={})
    with first, ControlAgent(zk, service, cache_file=file, clients=lambda: [first]).start():
        wait_until(lambda: first.options.timeout == 0.042, 5.0, "applied")
    assert json.loads(file.read_text())["settings"] == {"memcache.timeout_ms": 42}
    # "Restarted", with ZooKeeper unreachable: the file's data applies at once.
    with Memcache([memcached.address], timeout=0.5, environ={}) as second, \
            ZooKeeper(_refused(), connect_timeout=0.5, environ={}) as down:
        began = time.monotonic()
        with ControlAgent(down, service, cache_file=file, poll_interval=0.1,
                          clients=lambda: [second]).start() as agent:
            assert time.monotonic() - began < 3.0  # start() is bounded
            assert second.options.timeout == 0.042
            age = agent.age()
            time.sleep(0.3)
            assert agent.age() > age and agent.last_error is None
    # ZooKeeper back (even another ensemble, whose zxids are lower): its data wins.
    record = json.loads(file.read_text())
    file.write_text(json.dumps({**record, "version": 10**15}))
    zk.set(node_path(service), dumps({"memcache.timeout_ms": 30}))
    third = Memcache([memcached.address], timeout=0.5, environ={})
    with third, ControlAgent(zk, service, cache_file=file, clients=lambda: [third]).start():
        wait_until(lambda: third.options.timeout == 0.03, 5.0, "ZooKeeper's data applied")


def test_command_sets_shows_and_clears(zookeeper: Any, zk: ZooKeeper, service: str,
                                       capsys: pytest.CaptureFixture[str]) -> None:
    base = ["--zk", zookeeper.address, "--service", service]
    assert main(["control", "set", "memcache.breaker=forced_open", *base]) == 0
    assert main(["control", "set", "memcache.timeout_ms=50", *base]) == 0  # merged
    capsys.readouterr()
    assert main(["control", "show", *base]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["settings"] == {"memcache.breaker": "forced_open", "memcache.timeout_ms": 50}
    # A bad key is refused before anything is written, the key named.
    assert main(["control", "set", "memcache.timeout_ms=10", "memcahce.breaker=disabled",
                 *base]) == 2
    assert "'memcahce.breaker'" in capsys.readouterr().err
    got = zk.get(node_path(service))
    assert got is not None and json.loads(got[0])["memcache.timeout_ms"] == 50
    assert main(["control", "clear", "memcache.breaker", *base]) == 0
    got = zk.get(node_path(service))
    assert got is not None and json.loads(got[0]) == {"memcache.timeout_ms": 50}
    assert main(["control", "clear", *base]) == 0
    assert zk.get(node_path(service)) is None
