"""The fault fixtures of the pytest plugin, as a user's suite would use them."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from collections.abc import Callable

import pytest

from resilience.faults.netns import Firewall, Namespace
from resilience.faults.process import is_stopped
from resilience.faults.proxy import FaultProxy
from resilience.faults.toxics import Latency
from resilience.testing._fault_fixtures import Freezer

from ._echo import EchoServer

needs_netns = pytest.mark.netns  # skipped where unavailable; fails when required (CI)


def test_plugin_import_loads_no_fault_machinery() -> None:
    code = ("import sys, resilience.testing.plugin; "
            "print([m for m in ('resilience.faults.proxy', 'asyncio') if m in sys.modules])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, timeout=30).stdout
    assert "resilience.faults.proxy" not in out


def test_fault_proxy_fixture_gives_a_started_proxy(
    fault_proxy: Callable[..., FaultProxy], echo: EchoServer
) -> None:
    proxy = fault_proxy(echo.address, seed=3)
    with socket.create_connection(proxy.address, timeout=1) as s, \
            proxy.toxic(Latency(latency_ms=50)):
        t0 = time.monotonic()
        s.sendall(b"a")
        assert s.recv(1) == b"a"
        assert time.monotonic() - t0 >= 0.045


def test_connect_blackhole_fixture_hangs_connects(connect_blackhole: tuple[str, int]) -> None:
    with pytest.raises(TimeoutError):
        socket.create_connection(connect_blackhole, timeout=0.1)


def test_freeze_fixture_stops_a_process_and_thaws_at_teardown(freeze: Freezer) -> None:
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        freeze(child.pid)
        assert is_stopped(child.pid)
        freeze.thaw(child.pid)
        assert not is_stopped(child.pid)
    finally:
        child.kill()
        child.wait(5)


def test_thaw_all_thaws_the_others_when_one_thaw_fails(monkeypatch: pytest.MonkeyPatch) -> None:
    from resilience.faults import process

    children = [subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
                for _ in range(2)]
    stuck = children[0].pid
    real_thaw = process.thaw

    def thaw(pid: int, *, group: bool = False, wait: float = 2.0) -> None:
        if pid == stuck:
            raise TimeoutError(f"process {pid} not running")
        real_thaw(pid, group=group, wait=wait)

    freezer = Freezer()
    try:
        for child in children:
            freezer(child.pid)
        monkeypatch.setattr(process, "thaw", thaw)
        with pytest.raises(TimeoutError, match=str(stuck)):
            freezer.thaw_all()
        assert not is_stopped(children[1].pid)
    finally:
        for child in children:
            child.kill()
            child.wait(5)


@needs_netns
def test_netns_and_firewall_fixtures(
    netns: Callable[..., Namespace], firewall: Callable[[Namespace], Firewall]
) -> None:
    ns = netns()
    ns.run([sys.executable, "-c",
            "import socket,time; s=socket.create_server(('0.0.0.0', 7000)); time.sleep(60)"])
    deadline = time.monotonic() + 10
    while True:
        try:
            socket.create_connection((ns.ns_ip, 7000), timeout=0.2).close()
            break
        except OSError:
            assert time.monotonic() < deadline
            time.sleep(0.05)
    firewall(ns).drop(7000)
    with pytest.raises(TimeoutError):
        socket.create_connection((ns.ns_ip, 7000), timeout=0.2)


@pytest.mark.parametrize(("required", "outcome"), [("", "skip"), ("1", "fail")])
def test_unavailable_namespaces_skip_or_fail_when_required(
    monkeypatch: pytest.MonkeyPatch, required: str, outcome: str
) -> None:
    """Without namespaces a netns test skips, unless RESILIENCE_REQUIRE_NETNS makes it fail."""
    from resilience.faults import netns as netns_mod
    from resilience.testing._fault_fixtures import require_netns

    monkeypatch.setattr(netns_mod, "unavailable_reason", lambda: "not root")
    monkeypatch.setenv("RESILIENCE_REQUIRE_NETNS", required)
    expected = pytest.skip.Exception if outcome == "skip" else pytest.fail.Exception
    with pytest.raises(expected, match="not root"):
        require_netns()
