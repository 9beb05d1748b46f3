"""The talk's firewall faults: iptables rules inside a :class:`~.netns.Namespace`.

Rules live in the namespace's own tables, never on the host, and vanish with it. See
:mod:`resilience.faults.netns` for the table of rules and what a client sees, and for
the conntrack detail behind ``drop_established``.
"""

from __future__ import annotations

from collections.abc import Sequence
from types import TracebackType
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from resilience.faults.netns import Namespace

__all__ = ["Firewall", "Rule", "RuleSet"]


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
        rules = RuleSet([])
        try:
            for chain, match in (("INPUT", "--dport"), ("OUTPUT", "--sport")):
                rules.rules.append(Rule(self.ns, chain, ["-p", "tcp", match, _port(port), *state]))
        except BaseException:
            rules.remove()  # half a rule set must not outlive the failed call
            raise
        return rules

    def rules(self) -> list[str]:
        """``iptables -S`` of the filter table inside the namespace."""
        return self.ns.iptables("-S").splitlines()
