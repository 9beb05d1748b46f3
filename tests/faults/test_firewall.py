"""Firewall rules against a stand-in namespace that records iptables calls (no root)."""

from __future__ import annotations

from typing import Any, cast

import pytest

from resilience.faults.firewall import Firewall


class FakeNamespace:
    """Records ``iptables`` arguments; fails the insert into ``fail_chain``."""

    name = "fake"
    closed = False

    def __init__(self, fail_chain: str = "") -> None:
        self.calls: list[tuple[str, ...]] = []
        self.fail_chain = fail_chain

    def iptables(self, *args: str) -> str:
        if args[:2] == ("-I", self.fail_chain):
            raise RuntimeError(f"iptables {' '.join(args)} failed")
        self.calls.append(args)
        return ""


def test_drop_established_inserts_both_directions_and_removes_both() -> None:
    ns = FakeNamespace()
    with Firewall(cast(Any, ns)).drop_established(7000):
        assert [c[:2] for c in ns.calls] == [("-I", "INPUT"), ("-I", "OUTPUT")]
    assert [c[:2] for c in ns.calls[2:]] == [("-D", "INPUT"), ("-D", "OUTPUT")]


def test_drop_established_that_fails_halfway_leaves_no_rule_behind() -> None:
    ns = FakeNamespace(fail_chain="OUTPUT")
    with pytest.raises(RuntimeError, match="OUTPUT"):
        Firewall(cast(Any, ns)).drop_established(7000)
    assert [c[:2] for c in ns.calls] == [("-I", "INPUT"), ("-D", "INPUT")]
