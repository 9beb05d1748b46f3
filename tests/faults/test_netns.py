"""The talk's experiment on raw sockets: a TCP server in a network namespace behind
iptables rules. Needs root, ip and iptables; skipped elsewhere."""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator

import pytest

from resilience.faults import netns
from resilience.faults.netns import Namespace, Rule

from ._echo import ECHO_SCRIPT

pytestmark = pytest.mark.netns  # skipped where unavailable; fails when required (CI)

PORT = 7777


def start_server(ns: Namespace) -> tuple[str, int]:
    """Start the echo server inside ``ns`` and wait (bounded) until it answers."""
    ns.run([sys.executable, "-c", ECHO_SCRIPT, "0.0.0.0", str(PORT)])
    addr = (ns.ns_ip, PORT)
    deadline = time.monotonic() + 10
    while True:
        try:
            socket.create_connection(addr, timeout=0.2).close()
            return addr
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)


def ours() -> list[str]:
    """Namespaces and links of this process that still exist (names carry our pid).

    Other tests of the session may hold theirs on purpose (a session-scoped server in a
    namespace), so a test compares with what existed before it: see :func:`left_by`.
    """
    found = netns.leftovers()
    pid = os.getpid()
    return [n for n in found["namespaces"] + found["links"]
            if n.startswith((f"{netns.NS_PREFIX}{pid}-", f"rfh{pid}x", f"rfn{pid}x", f"rfb{pid}x"))]


def left_by(before: set[str]) -> set[str]:
    """What this process holds now that it did not hold ``before``."""
    return set(ours()) - before


@pytest.fixture
def ns() -> Iterator[Namespace]:
    before = set(ours())
    with Namespace() as namespace:
        yield namespace
    assert left_by(before) == set()


@pytest.fixture
def server(ns: Namespace) -> tuple[str, int]:
    return start_server(ns)


def connect_time(addr: tuple[str, int], timeout: float) -> tuple[type[BaseException], float]:
    t0 = time.monotonic()
    with pytest.raises(OSError) as info:
        socket.create_connection(addr, timeout=timeout).close()
    return info.type, time.monotonic() - t0


def test_server_in_namespace_is_reachable_from_the_host(server: tuple[str, int]) -> None:
    with socket.create_connection(server, timeout=1) as s:
        s.sendall(b"hi")
        assert s.recv(2) == b"hi"


def test_reject_fails_a_connect_in_milliseconds(ns: Namespace, server: tuple[str, int]) -> None:
    with ns.firewall.reject(PORT):
        kind, took = connect_time(server, timeout=2.0)
    assert issubclass(kind, ConnectionRefusedError)
    assert took < 0.5


def test_reject_with_tcp_reset_is_connection_refused(
    ns: Namespace, server: tuple[str, int]
) -> None:
    with ns.firewall.reject(PORT, tcp_reset=True):
        kind, took = connect_time(server, timeout=2.0)
    assert issubclass(kind, ConnectionRefusedError)
    assert took < 0.5


def test_drop_blocks_a_connect_until_the_clients_timeout(
    ns: Namespace, server: tuple[str, int]
) -> None:
    with ns.firewall.drop(PORT):
        kind, took = connect_time(server, timeout=0.3)
    assert issubclass(kind, TimeoutError)
    assert 0.28 <= took < 1.0


def test_removing_a_rule_restores_connects(ns: Namespace, server: tuple[str, int]) -> None:
    rule = ns.firewall.drop(PORT)
    rule.remove()
    socket.create_connection(server, timeout=1).close()
    assert not any("DROP" in r for r in ns.firewall.rules())


def test_established_drop_blocks_a_read_until_the_clients_timeout(
    ns: Namespace, server: tuple[str, int]
) -> None:
    with socket.create_connection(server, timeout=0.3) as s:
        s.sendall(b"ok")
        assert s.recv(2) == b"ok"
        with ns.firewall.drop_established(PORT):
            s.sendall(b"lost")
            t0 = time.monotonic()
            with pytest.raises(TimeoutError):
                s.recv(4)
            assert 0.28 <= time.monotonic() - t0 < 1.0


def test_established_drop_with_no_timeout_hangs_the_read(
    ns: Namespace, server: tuple[str, int]
) -> None:
    s = socket.create_connection(server, timeout=1)
    s.sendall(b"ok")
    assert s.recv(2) == b"ok"
    s.settimeout(None)  # the driver default that the talk is about
    ended = threading.Event()

    def read() -> None:
        with contextlib.suppress(OSError):
            s.recv(4)
        ended.set()

    try:
        with ns.firewall.drop_established(PORT):
            s.sendall(b"lost")
            threading.Thread(target=read, daemon=True).start()
            assert not ended.wait(1.0), "the read should still be blocked after 1 s"
        # Rule removed: the read ends only at TCP's next retransmission of the lost
        # bytes (exponential backoff: measured 0.7 s after a 1 s hang, 1.8 s after 5 s).
        assert ended.wait(10.0)
    finally:
        with contextlib.suppress(OSError):
            s.shutdown(socket.SHUT_RDWR)  # wakes the reader if the assertion failed
        s.close()


def test_without_connection_tracking_the_first_packet_slips_through() -> None:
    """An INPUT-only ESTABLISHED rule in a namespace that tracked nothing yet: the
    first packet of an existing connection is picked up as NEW and passes."""
    before = set(ours())
    with Namespace(track_connections=False) as ns:
        addr = start_server(ns)
        with socket.create_connection(addr, timeout=0.3) as s:
            s.sendall(b"a")
            assert s.recv(1) == b"a"
            state = ["-m", "state", "--state", "ESTABLISHED", "-j", "DROP"]
            with Rule(ns, "INPUT", ["-p", "tcp", "--dport", str(PORT), *state]):
                s.sendall(b"b")
                assert s.recv(1) == b"b"  # slipped through
                s.sendall(b"c")
                with pytest.raises(TimeoutError):
                    s.recv(1)
    assert left_by(before) == set()


def test_teardown_removes_namespace_veth_and_rules() -> None:
    ns = Namespace()
    ns.firewall.drop(PORT)
    name, link = ns.name, ns.host_if
    assert name in netns.leftovers()["namespaces"]
    ns.close()
    found = netns.leftovers()
    assert name not in found["namespaces"] and link not in found["links"]
    host_rules = subprocess.run(["iptables", "-w", "5", "-S"], capture_output=True,
                                text=True, check=True, timeout=10).stdout
    assert f"--dport {PORT}" not in host_rules  # rules only ever live in the namespace


def test_close_goes_on_past_an_ip_command_that_hangs(monkeypatch: pytest.MonkeyPatch) -> None:
    ns = Namespace()
    real = netns._ip

    def hung_link_del(*args: str) -> subprocess.CompletedProcess[str]:
        if args[:2] == ("link", "del"):
            raise subprocess.TimeoutExpired(["ip", *args], 10)
        return real(*args)

    monkeypatch.setattr(netns, "_ip", hung_link_del)
    ns.close()  # does not raise, and still deletes the namespace
    monkeypatch.undo()
    assert ns.name not in netns.leftovers()["namespaces"]
    netns._ip("link", "del", ns.host_if)  # the kernel frees it lazily; do not wait


def test_proxy_may_forward_into_our_namespace(server: tuple[str, int]) -> None:
    from resilience.faults.proxy import FaultProxy

    with FaultProxy(server) as p, socket.create_connection(p.address, timeout=1) as s:
        s.sendall(b"via")
        assert s.recv(3) == b"via"


def test_leftovers_of_a_dead_process_are_cleaned_up() -> None:
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True, timeout=10)
    pid = int(dead.stdout)
    name = f"{netns.NS_PREFIX}{pid}-0"
    subprocess.run(["ip", "netns", "add", name], check=True, timeout=10)
    try:
        assert name in netns.cleanup_leftovers()
        assert name not in netns.leftovers()["namespaces"]
    finally:
        subprocess.run(["ip", "netns", "del", name], check=False, timeout=10,
                       capture_output=True)


CLIENT = """
import socket, sys
try:
    s = socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=0.3)
    s.sendall(b"hi")
    print(s.recv(2).decode())
except OSError as exc:
    print(type(exc).__name__)
"""


def test_namespaces_on_a_bridge_reach_each_other_and_the_host() -> None:
    before = set(ours())
    with netns.Bridge() as bridge:
        node_a, node_b = bridge.namespace(), bridge.namespace()
        assert node_a.network == node_b.network and node_a.ns_ip != node_b.ns_ip
        addr = start_server(node_a)  # reachable from the host
        assert node_b.exec([sys.executable, "-c", CLIENT, addr[0], str(PORT)]).strip() == "hi"
        with node_a.firewall.drop(PORT):  # a firewall fault between two nodes
            out = node_b.exec([sys.executable, "-c", CLIENT, addr[0], str(PORT)])
            assert out.strip() == "TimeoutError"
        name = bridge.name
    found = netns.leftovers()
    assert name not in found["links"] and left_by(before) == set()
