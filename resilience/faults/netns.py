"""Network namespaces with a veth pair, and the talk's firewall faults inside them.

A :class:`Namespace` is a private network that exists only between this host and the
namespace: a veth pair in a /30 of ``10.200.0.0/16`` (host side ``.1``, namespace side
``.2``), ``lo`` up inside. Run a server in it with :meth:`Namespace.run`, reach it at
:attr:`Namespace.ns_ip`, and break the path with its :class:`Firewall`:

=====================  =============================================  ====================
fault                   rule (inside the namespace)                   a client sees
=====================  =============================================  ====================
reject                  ``INPUT --dport P -j REJECT``                 refused (ICMP) fast
reject tcp-reset        ``... -j REJECT --reject-with tcp-reset``     ConnectionRefused
drop                    ``INPUT --dport P -j DROP``                   connect hangs
drop established        ``INPUT --dport P`` and ``OUTPUT --sport P``  reads hang
                        ``-m state --state ESTABLISHED -j DROP``
=====================  =============================================  ====================

The conntrack detail: an ``ESTABLISHED`` rule only matches connections conntrack already
tracks, and a namespace starts tracking only once some state-matching rule exists in
it. So every namespace loads a counter-only rule (``OUTPUT -m state --state
NEW,ESTABLISHED,RELATED,INVALID``, no target) at creation. Without it (measured), the
first packet of a connection made before an INPUT-only ESTABLISHED DROP is picked up
mid-stream as NEW and passes; only later packets are dropped.

Teardown is guaranteed three ways: context managers, an ``atexit`` hook, and
:func:`cleanup_leftovers` (run at each creation) which deletes namespaces and veths
named after a process that no longer exists. Names carry the pid (``rfault-<pid>-<n>``,
``rfh<pid>x<n>``) so parallel runs never clash. Deleting a namespace frees its veth
lazily in the kernel, so teardown deletes the veth explicitly first.

For a cluster whose nodes must reach each other, create the namespaces on a
:class:`Bridge` (a host bridge with a /24 of ``10.200.0.0/16``; host ``.1``, nodes from
``.2``): the nodes talk over the bridge and the host reaches each by its own address.

Needs root, ``ip`` (iproute2) and ``iptables``: :func:`unavailable_reason` says why not.
"""

from __future__ import annotations

import atexit
import contextlib
import ipaddress
import itertools
import os
import re
import shutil
import signal
import subprocess
import weakref
from collections.abc import Sequence
from types import TracebackType
from typing import Any

from resilience.faults._addresses import NS_PREFIX, allow_network, disallow_network
from resilience.faults.firewall import Firewall, Rule, RuleSet

__all__ = [
    "NS_PREFIX",
    "Bridge",
    "Firewall",
    "Namespace",
    "Rule",
    "RuleSet",
    "cleanup_leftovers",
    "leftovers",
    "unavailable_reason",
]

_CMD_TIMEOUT = 10.0
_SUPERNET = ipaddress.IPv4Network("10.200.0.0/16")
_counter = itertools.count()
_live: weakref.WeakSet[Namespace | Bridge] = weakref.WeakSet()
_NAME_RE = re.compile(r"^(?:rfault-|rf[hnb])(\d+)[-x]\d+")


def _ip(*args: str) -> subprocess.CompletedProcess[str]:
    """Run ``ip <args>`` (bounded); the caller reads its return code."""
    return subprocess.run(
        ["ip", *args], capture_output=True, text=True, timeout=_CMD_TIMEOUT, check=False
    )


def _ip_delete(*args: str) -> None:
    """A teardown step: best effort, never raises, so the steps after it still run (a
    hung or missing ``ip`` leaves a leftover for :func:`cleanup_leftovers`)."""
    with contextlib.suppress(OSError, subprocess.TimeoutExpired):
        _ip(*args)


def unavailable_reason() -> str | None:
    """Why firewall faults cannot run here (not root, no ip, no iptables), or None."""
    if os.geteuid() != 0:
        return "network namespaces and iptables need root"
    for tool in ("ip", "iptables"):
        if shutil.which(tool) is None:
            return f"{tool!r} not found (apt-get install iproute2 iptables)"
    return None


def _owner_alive(name: str) -> bool:
    m = _NAME_RE.match(name)
    if not m:
        return True  # not ours: never touch
    try:
        os.kill(int(m.group(1)), 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def leftovers() -> dict[str, list[str]]:
    """Namespaces, host veths and bridges with our prefixes that exist now (any owner)."""
    namespaces = [n for n in _ip("netns", "list").stdout.split() if
                  n.startswith(NS_PREFIX)]
    links = re.findall(r"^\d+: (rf[hnb]\d+x\d+)[@:]", _ip("-o", "link").stdout,
                       flags=re.M)
    return {"namespaces": namespaces, "links": links}


def cleanup_leftovers() -> list[str]:
    """Delete namespaces, veths and bridges of ours whose owning process is gone; return
    their names."""
    found = leftovers()
    removed = []
    # veths before bridges: a bridge goes cleanly once its ports are gone
    for link in sorted(found["links"], key=lambda name: name.startswith("rfb")):
        if not _owner_alive(link):
            _ip_delete("link", "del", link)
            removed.append(link)
    for ns in found["namespaces"]:
        if not _owner_alive(ns):
            _ip_delete("netns", "del", ns)
            removed.append(ns)
    return removed


def _used_networks() -> list[ipaddress.IPv4Network]:
    out = _ip("-o", "-4", "addr", "show").stdout
    return [ipaddress.IPv4Interface(a).network for a in re.findall(r"inet (\S+)", out)]


def _pick_network(pid: int, n: int, prefixlen: int = 30) -> ipaddress.IPv4Network:
    """A free block of ``10.200.0.0/16``, starting from a pid-derived offset so that
    parallel runs rarely even look at the same blocks."""
    used = _used_networks()
    size = 2 ** (32 - prefixlen)
    slots = _SUPERNET.num_addresses // size
    start = (pid * 16 + n) % slots
    for i in range(slots):
        base = _SUPERNET.network_address + size * ((start + i) % slots)
        net = ipaddress.IPv4Network(f"{base}/{prefixlen}")
        if not any(net.overlaps(u) for u in used):
            return net
    raise RuntimeError(f"no free /{prefixlen} left in {_SUPERNET}")


def _run_steps(steps: Sequence[Sequence[str]]) -> None:
    for step in steps:
        res = _ip(*step)
        if res.returncode:
            raise RuntimeError(f"ip {' '.join(step)} failed: {res.stderr.strip()}")


class Bridge:
    """A host bridge with a private /24, for clusters: namespaces made with
    :meth:`namespace` reach each other (bridged, so the host needs no IP forwarding)
    and the host, which is ``host_ip`` (``.1``) on the bridge.

    Bridged packets may traverse the host's iptables FORWARD chain (br_netfilter); a
    host whose FORWARD policy is DROP must accept ``-i <bridge> -o <bridge>``.

    Raises:
        RuntimeError: not available here, or an ``ip`` command failed.
    """

    def __init__(self) -> None:
        reason = unavailable_reason()
        if reason:
            raise RuntimeError(f"cannot create a bridge: {reason}")
        cleanup_leftovers()
        pid, n = os.getpid(), next(_counter)
        self.name = f"rfb{pid}x{n}"
        self.network = _pick_network(pid, n, 24)
        self.host_ip = str(self.network.network_address + 1)
        self.namespaces: list[Namespace] = []
        self._next_host = 2
        self.closed = False
        _live.add(self)
        try:
            _run_steps([
                ("link", "add", self.name, "type", "bridge"),
                ("addr", "add", f"{self.host_ip}/24", "dev", self.name),
                ("link", "set", self.name, "up"),
            ])
        except BaseException:
            self.close()
            raise
        allow_network(str(self.network))

    def lease(self) -> str:
        """The next free address of the bridge's network."""
        if self._next_host > 254:
            raise RuntimeError(f"bridge {self.name}: all 253 addresses are in use")
        ip = str(self.network.network_address + self._next_host)
        self._next_host += 1
        return ip

    def namespace(self, *, track_connections: bool = True) -> Namespace:
        """A new namespace attached to this bridge (closed with it)."""
        return Namespace(track_connections=track_connections, bridge=self)

    def close(self) -> None:
        """Close every namespace on the bridge, then delete it. Idempotent."""
        if self.closed:
            return
        self.closed = True
        for ns in self.namespaces:
            ns.close()
        _ip_delete("link", "del", self.name)
        disallow_network(str(self.network))
        _live.discard(self)

    def __enter__(self) -> Bridge:
        return self

    def __exit__(
        self, t: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Bridge({self.name}, {self.network})"


class Namespace:
    """A network namespace reachable from the host through its own veth pair.

    Args:
        track_connections: load the counter-only state rule so ESTABLISHED rules work
            (see the module docstring); turn off only to show why it is needed.
        bridge: attach to this :class:`Bridge` (an address in its /24) instead of a
            point-to-point /30 of its own.

    Raises:
        RuntimeError: not available here (see :func:`unavailable_reason`) or a command
            failed; the message has the command and its error output.
    """

    def __init__(self, *, track_connections: bool = True, bridge: Bridge | None = None) -> None:
        reason = unavailable_reason()
        if reason:
            raise RuntimeError(f"cannot create a network namespace: {reason}")
        cleanup_leftovers()
        pid, n = os.getpid(), next(_counter)
        self.name = f"{NS_PREFIX}{pid}-{n}"
        self.host_if, self.ns_if = f"rfh{pid}x{n}", f"rfn{pid}x{n}"
        self.bridge = bridge
        if bridge is None:
            self.network = _pick_network(pid, n)
            self.host_ip = str(self.network.network_address + 1)
            self.ns_ip = str(self.network.network_address + 2)
        else:
            if bridge.closed:
                raise RuntimeError(f"{bridge!r} is closed")
            self.network, self.host_ip, self.ns_ip = bridge.network, bridge.host_ip, bridge.lease()
            bridge.namespaces.append(self)
        self._procs: list[subprocess.Popen[Any]] = []
        self.closed = False
        _live.add(self)
        try:
            self._create(track_connections)
        except BaseException:
            self.close()
            raise

    def _create(self, track: bool) -> None:
        plen = self.network.prefixlen
        host_side = (
            [("addr", "add", f"{self.host_ip}/{plen}", "dev", self.host_if)]
            if self.bridge is None
            else [("link", "set", self.host_if, "master", self.bridge.name)]
        )
        _run_steps([
            ("netns", "add", self.name),
            ("link", "add", self.host_if, "type", "veth", "peer", "name", self.ns_if),
            ("link", "set", self.ns_if, "netns", self.name),
            *host_side,
            ("link", "set", self.host_if, "up"),
            ("-n", self.name, "addr", "add", f"{self.ns_ip}/{plen}", "dev", self.ns_if),
            ("-n", self.name, "link", "set", self.ns_if, "up"),
            ("-n", self.name, "link", "set", "lo", "up"),
        ])
        if self.bridge is None:
            allow_network(str(self.network))
        if track:
            self.iptables("-A", "OUTPUT", "-m", "state", "--state",
                          "NEW,ESTABLISHED,RELATED,INVALID")

    @property
    def firewall(self) -> Firewall:
        """The talk's rules for servers in this namespace."""
        return Firewall(self)

    def exec(self, argv: Sequence[str], timeout: float = _CMD_TIMEOUT) -> str:
        """Run ``argv`` inside the namespace to completion; return its stdout.

        Raises:
            RuntimeError: it failed (the message has its stderr).
            subprocess.TimeoutExpired: it took longer than ``timeout``.
        """
        res = subprocess.run(["ip", "netns", "exec", self.name, *argv], capture_output=True,
                             text=True, timeout=timeout)
        if res.returncode:
            raise RuntimeError(f"in {self.name}: {' '.join(argv)} failed: {res.stderr.strip()}")
        return res.stdout

    def iptables(self, *args: str) -> str:
        """Run ``iptables -w <args>`` inside the namespace."""
        return self.exec(["iptables", "-w", "5", *args])

    def run(self, argv: Sequence[str], **popen_kwargs: Any) -> subprocess.Popen[Any]:
        """Start ``argv`` inside the namespace in its own process group; it is killed
        (the whole group) at :meth:`close`."""
        proc: subprocess.Popen[Any] = subprocess.Popen(
            ["ip", "netns", "exec", self.name, *argv], start_new_session=True, **popen_kwargs
        )
        self._procs.append(proc)
        return proc

    def close(self) -> None:
        """Kill the processes started here, delete the veth and the namespace (its
        iptables rules go with it). Idempotent; never raises for a missing piece."""
        if self.closed:
            return
        self.closed = True
        for proc in self._procs:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(proc.pid, signal.SIGKILL)
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(_CMD_TIMEOUT)
        _ip_delete("link", "del", self.host_if)
        _ip_delete("netns", "del", self.name)
        if self.bridge is None:
            disallow_network(str(self.network))
        _live.discard(self)

    def __enter__(self) -> Namespace:
        return self

    def __exit__(
        self, t: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Namespace({self.name}, host {self.host_ip} <-> ns {self.ns_ip})"


@atexit.register
def _close_all() -> None:
    for thing in list(_live):
        with contextlib.suppress(Exception):
            thing.close()
