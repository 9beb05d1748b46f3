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
NEW,ESTABLISHED,RELATED,INVALID``, no target) at creation; without it a connection made
before the DROP slips through.

Teardown is guaranteed three ways: context managers, an ``atexit`` hook, and
:func:`cleanup_leftovers` (run at each creation) which deletes namespaces and veths
named after a process that no longer exists. Names carry the pid (``rfault-<pid>-<n>``,
``rfh<pid>x<n>``) so parallel runs never clash. Deleting a namespace frees its veth
lazily in the kernel, so teardown deletes the veth explicitly first.

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

__all__ = [
    "NS_PREFIX",
    "Firewall",
    "Namespace",
    "Rule",
    "cleanup_leftovers",
    "leftovers",
    "unavailable_reason",
]

_CMD_TIMEOUT = 10.0
_SUPERNET = ipaddress.IPv4Network("10.200.0.0/16")
_SLOTS = _SUPERNET.num_addresses // 4
_counter = itertools.count()
_live: weakref.WeakSet[Namespace] = weakref.WeakSet()
_NAME_RE = re.compile(r"^(?:rfault-|rf[hn])(\d+)[-x]\d+")


def _ip(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["ip", *args], capture_output=True, text=True, timeout=_CMD_TIMEOUT, check=check
    )


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
    """Namespaces and host veths with our prefixes that exist now (any owner)."""
    namespaces = [n for n in _ip("netns", "list", check=False).stdout.split() if
                  n.startswith(NS_PREFIX)]
    links = re.findall(r"^\d+: (rf[hn]\d+x\d+)[@:]", _ip("-o", "link", check=False).stdout,
                       flags=re.M)
    return {"namespaces": namespaces, "links": links}


def cleanup_leftovers() -> list[str]:
    """Delete namespaces and veths of ours whose owning process is gone; return them."""
    found = leftovers()
    removed = []
    for link in found["links"]:
        if not _owner_alive(link):
            _ip("link", "del", link, check=False)
            removed.append(link)
    for ns in found["namespaces"]:
        if not _owner_alive(ns):
            _ip("netns", "del", ns, check=False)
            removed.append(ns)
    return removed


def _used_networks() -> list[ipaddress.IPv4Network]:
    out = _ip("-o", "-4", "addr", "show", check=False).stdout
    return [ipaddress.IPv4Interface(a).network for a in re.findall(r"inet (\S+)", out)]


def _pick_network(pid: int, n: int) -> ipaddress.IPv4Network:
    used = _used_networks()
    start = (pid * 16 + n) % _SLOTS
    for i in range(_SLOTS):
        base = _SUPERNET.network_address + 4 * ((start + i) % _SLOTS)
        net = ipaddress.IPv4Network(f"{base}/30")
        if not any(net.overlaps(u) for u in used):
            return net
    raise RuntimeError(f"no free /30 left in {_SUPERNET}")


class Namespace:
    """A network namespace reachable from the host through its own veth pair.

    Args:
        track_connections: load the counter-only state rule so ESTABLISHED rules work
            (see the module docstring); turn off only to show why it is needed.

    Raises:
        RuntimeError: not available here (see :func:`unavailable_reason`) or a command
            failed; the message has the command and its error output.
    """

    def __init__(self, *, track_connections: bool = True) -> None:
        reason = unavailable_reason()
        if reason:
            raise RuntimeError(f"cannot create a network namespace: {reason}")
        cleanup_leftovers()
        pid, n = os.getpid(), next(_counter)
        self.name = f"{NS_PREFIX}{pid}-{n}"
        self.host_if, self.ns_if = f"rfh{pid}x{n}", f"rfn{pid}x{n}"
        self.network = _pick_network(pid, n)
        self.host_ip = str(self.network.network_address + 1)
        self.ns_ip = str(self.network.network_address + 2)
        self._procs: list[subprocess.Popen[Any]] = []
        self.closed = False
        _live.add(self)
        try:
            self._create(track_connections)
        except BaseException:
            self.close()
            raise

    def _create(self, track: bool) -> None:
        steps = [
            ("netns", "add", self.name),
            ("link", "add", self.host_if, "type", "veth", "peer", "name", self.ns_if),
            ("link", "set", self.ns_if, "netns", self.name),
            ("addr", "add", f"{self.host_ip}/30", "dev", self.host_if),
            ("link", "set", self.host_if, "up"),
            ("-n", self.name, "addr", "add", f"{self.ns_ip}/30", "dev", self.ns_if),
            ("-n", self.name, "link", "set", self.ns_if, "up"),
            ("-n", self.name, "link", "set", "lo", "up"),
        ]
        for step in steps:
            res = _ip(*step, check=False)
            if res.returncode:
                raise RuntimeError(f"ip {' '.join(step)} failed: {res.stderr.strip()}")
        allow_network(str(self.network))
        if track:
            self.iptables("-A", "OUTPUT", "-m", "state", "--state",
                          "NEW,ESTABLISHED,RELATED,INVALID")

    @property
    def firewall(self) -> Firewall:
        return Firewall(self)

    def exec(self, argv: Sequence[str], timeout: float = _CMD_TIMEOUT) -> str:
        """Run ``argv`` inside the namespace to completion; return its stdout.

        Raises:
            RuntimeError: it failed (the message has its stderr).
            subprocess.TimeoutExpired: it took longer than ``timeout``.
        """
        res = subprocess.run(["ip", "netns", "exec", self.name, *argv], capture_output=True,
                             text=True, timeout=timeout, check=False)
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
        _ip("link", "del", self.host_if, check=False)
        _ip("netns", "del", self.name, check=False)
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


class Rule:
    """One iptables rule inside a namespace; ``remove()`` or leave its ``with`` block."""

    def __init__(self, ns: Namespace, chain: str, spec: Sequence[str]) -> None:
        self.ns, self.chain, self.spec = ns, chain, list(spec)
        ns.iptables("-I", chain, "1", *self.spec)
        self.active = True

    def remove(self) -> None:
        """Delete the rule (idempotent; a closed namespace took it already)."""
        if self.active and not self.ns.closed:
            self.ns.iptables("-D", self.chain, *self.spec)
        self.active = False

    def __enter__(self) -> Rule:
        return self

    def __exit__(
        self, t: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.remove()

    def __repr__(self) -> str:
        return f"Rule({self.ns.name}: -A {self.chain} {' '.join(self.spec)})"


class RuleSet:
    """Several rules applied and removed together."""

    def __init__(self, rules: Sequence[Rule]) -> None:
        self.rules = list(rules)

    def remove(self) -> None:
        for rule in self.rules:
            rule.remove()

    def __enter__(self) -> RuleSet:
        return self

    def __exit__(
        self, t: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.remove()


def _port(port: int) -> str:
    if not isinstance(port, int) or not 0 < port < 65536:
        raise ValueError(f"port {port!r}: expected an int in 1..65535")
    return str(port)


class Firewall:
    """The talk's rules for TCP traffic to a server listening inside ``ns`` on a port."""

    def __init__(self, ns: Namespace) -> None:
        self.ns = ns

    def reject(self, port: int, *, tcp_reset: bool = False) -> Rule:
        """REJECT new packets to ``port``: ICMP port unreachable, or a TCP RST."""
        how = "tcp-reset" if tcp_reset else "icmp-port-unreachable"
        return Rule(self.ns, "INPUT", ["-p", "tcp", "--dport", _port(port), "-j", "REJECT",
                                       "--reject-with", how])

    def drop(self, port: int) -> Rule:
        """DROP every packet to ``port``: SYNs vanish and connects hang."""
        return Rule(self.ns, "INPUT", ["-p", "tcp", "--dport", _port(port), "-j", "DROP"])

    def drop_established(self, port: int) -> RuleSet:
        """DROP packets of established connections, both ways: the slide's hang."""
        state = ["-m", "state", "--state", "ESTABLISHED", "-j", "DROP"]
        return RuleSet([
            Rule(self.ns, "INPUT", ["-p", "tcp", "--dport", _port(port), *state]),
            Rule(self.ns, "OUTPUT", ["-p", "tcp", "--sport", _port(port), *state]),
        ])

    def rules(self) -> list[str]:
        """``iptables -S`` of the filter table inside the namespace."""
        return self.ns.iptables("-S").splitlines()


@atexit.register
def _close_all() -> None:
    for ns in list(_live):
        with contextlib.suppress(Exception):
            ns.close()
