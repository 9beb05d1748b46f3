"""pytest fixtures (fault); re-exported by resilience.testing.plugin.

Every fixture cleans up at teardown, even when the test fails: proxies are stopped,
blackholes closed, namespaces (with their veths and rules) deleted, frozen processes
thawed. Nothing is imported from :mod:`resilience.faults` until a fixture runs, so the
plugin costs nothing for suites that do not use them.

* ``fault_proxy(upstream, seed=0, listen=...)`` -> a started
  :class:`~resilience.faults.proxy.FaultProxy`.
* ``connect_blackhole`` -> ``(host, port)`` where connects hang until the client's
  timeout (no root needed).
* ``netns(track_connections=True, bridge=None)`` -> a
  :class:`~resilience.faults.netns.Namespace` (on ``bridge`` for a cluster);
  skips the test where namespaces are unavailable (not root, no ip/iptables), or
  fails it when ``RESILIENCE_REQUIRE_NETNS=1`` (CI sets it, so a lost firewall test is
  never a silent skip). ``@pytest.mark.netns`` does the same for a whole test.
* ``firewall(ns)`` -> that namespace's :class:`~resilience.faults.netns.Firewall`,
  whose rules are all removed at teardown.
* ``freeze(pid, group=False)`` stops a process; all are thawed at teardown
  (``freeze.thaw(pid)`` thaws one earlier).
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from resilience.faults.netns import Bridge, Firewall, Namespace, Rule, RuleSet
    from resilience.faults.proxy import FaultProxy

__all__ = [
    "Freezer",
    "_resilience_netns_marker",
    "connect_blackhole",
    "fault_proxy",
    "firewall",
    "freeze",
    "netns",
    "require_netns",
]

ENV_REQUIRE_NETNS = "RESILIENCE_REQUIRE_NETNS"


def require_netns() -> None:
    """Skip the calling test where network namespaces are unavailable, or fail it when
    ``RESILIENCE_REQUIRE_NETNS`` is ``1``/``true``/``yes``."""
    from resilience.faults import netns as netns_mod

    reason = netns_mod.unavailable_reason()
    if reason is None:
        return
    message = f"network namespaces unavailable: {reason}"
    if os.environ.get(ENV_REQUIRE_NETNS, "").strip().lower() in ("1", "true", "yes"):
        pytest.fail(f"{message} ({ENV_REQUIRE_NETNS} is set)", pytrace=False)
    pytest.skip(message)


@pytest.fixture(autouse=True)
def _resilience_netns_marker(request: pytest.FixtureRequest) -> None:
    """Honours ``@pytest.mark.netns``: see :func:`require_netns`."""
    if request.node.get_closest_marker("netns") is not None:
        require_netns()


@pytest.fixture
def fault_proxy() -> Iterator[Callable[..., FaultProxy]]:
    """Factory: ``fault_proxy("127.0.0.1:11211", seed=1)`` -> a started FaultProxy."""
    from resilience.faults.proxy import FaultProxy

    proxies: list[FaultProxy] = []

    def make(upstream: str | tuple[str, int], *, seed: int = 0, **kwargs: Any) -> FaultProxy:
        proxy = FaultProxy(upstream, seed=seed, **kwargs)
        proxies.append(proxy)
        return proxy.start()

    yield make
    for proxy in proxies:
        proxy.stop()


@pytest.fixture
def connect_blackhole() -> Iterator[tuple[str, int]]:
    """``(host, port)`` on loopback whose TCP connects hang (SYNs dropped)."""
    from resilience.faults.blackhole import ConnectBlackhole

    with ConnectBlackhole() as hole:
        yield hole.address


@pytest.fixture
def netns() -> Iterator[Callable[..., Namespace]]:
    """Factory: ``netns()`` -> a Namespace with a veth pair; deleted at teardown."""
    from resilience.faults import netns as netns_mod

    require_netns()
    made: list[Namespace] = []

    def make(*, track_connections: bool = True, bridge: Bridge | None = None) -> Namespace:
        ns = netns_mod.Namespace(track_connections=track_connections, bridge=bridge)
        made.append(ns)
        return ns

    yield make
    for ns in made:
        ns.close()


@pytest.fixture
def firewall() -> Iterator[Callable[[Namespace], Firewall]]:
    """Factory: ``firewall(ns)`` -> its Firewall; every rule it made is removed at
    teardown (before the namespace goes, if both fixtures are used)."""
    from resilience.faults.netns import Firewall

    made: list[Rule | RuleSet] = []

    class _Tracked(Firewall):
        def reject(self, port: int, *, tcp_reset: bool = False) -> Rule:
            made.append(rule := super().reject(port, tcp_reset=tcp_reset))
            return rule

        def drop(self, port: int) -> Rule:
            made.append(rule := super().drop(port))
            return rule

        def drop_established(self, port: int) -> RuleSet:
            made.append(rules := super().drop_established(port))
            return rules

    yield _Tracked
    for rule in reversed(made):
        with contextlib.suppress(Exception):  # the namespace may be gone already
            rule.remove()


class Freezer:
    """The ``freeze`` fixture: call it with a pid to freeze; thaws all at teardown."""

    def __init__(self) -> None:
        self.frozen: dict[int, bool] = {}

    def __call__(self, pid: int, *, group: bool = False) -> None:
        from resilience.faults.process import freeze

        self.frozen[pid] = group
        freeze(pid, group=group)

    def thaw(self, pid: int) -> None:
        from resilience.faults.process import thaw

        group = self.frozen.pop(pid, False)
        with contextlib.suppress(ProcessLookupError):
            thaw(pid, group=group)

    def thaw_all(self) -> None:
        """Thaw every frozen process; one that fails does not leave the rest stopped."""
        errors: list[Exception] = []
        for pid in list(self.frozen):
            try:
                self.thaw(pid)
            except Exception as exc:
                errors.append(exc)
        if errors:
            raise errors[0]


@pytest.fixture
def freeze() -> Iterator[Freezer]:
    """``freeze(pid)`` SIGSTOPs a process; every frozen process is thawed at teardown."""
    freezer = Freezer()
    yield freezer
    freezer.thaw_all()
