"""resilience.faults: produce every fault mode on demand, for tests and benchmarks.

Depends on nothing else in the package (stdlib only). Names are imported lazily, on
first use, so ``import resilience.faults`` stays cheap.

* :class:`FaultProxy` and the toxics (:mod:`.toxics`): latency, blackhole, timeout,
  reset, bandwidth, slicer, slow close, limit data, garbage, refuse.
* :class:`ConnectBlackhole`: a loopback address whose connects hang, without root.
* :class:`Namespace` / :class:`Bridge` / :class:`Firewall` (:mod:`.netns`): the talk's
  iptables rules on servers in network namespaces (root).
* :mod:`.process`: freeze, thaw, kill and restart processes.
* :class:`FaultSchedule` / :class:`ScheduleRunner`: seeded, replayable fault schedules.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from resilience.faults.blackhole import ConnectBlackhole
    from resilience.faults.netns import Bridge, Firewall, Namespace
    from resilience.faults.process import ManagedProcess, freeze, frozen, kill, thaw
    from resilience.faults.proxy import FaultProxy, ProxyCounters
    from resilience.faults.schedule import (
        CallbackFault,
        FaultSchedule,
        FaultWindow,
        RuleFault,
        ScheduleRunner,
        ToxicFault,
    )
    from resilience.faults.toxics import (
        Bandwidth,
        Blackhole,
        Garbage,
        Latency,
        LimitData,
        Refuse,
        Reset,
        Slicer,
        SlowClose,
        Timeout,
        Toxic,
        parse_toxic,
    )

_WHERE = {
    "ConnectBlackhole": "blackhole",
    "Bridge": "netns", "Firewall": "netns", "Namespace": "netns",
    "ManagedProcess": "process", "freeze": "process", "frozen": "process",
    "kill": "process", "thaw": "process",
    "FaultProxy": "proxy", "ProxyCounters": "proxy",
    "CallbackFault": "schedule", "FaultSchedule": "schedule", "FaultWindow": "schedule",
    "RuleFault": "schedule", "ScheduleRunner": "schedule", "ToxicFault": "schedule",
    **{name: "toxics" for name in (
        "Bandwidth", "Blackhole", "Garbage", "Latency", "LimitData", "Refuse", "Reset",
        "Slicer", "SlowClose", "Timeout", "Toxic", "parse_toxic")},
}

__all__ = [
    "Bandwidth",
    "Blackhole",
    "Bridge",
    "CallbackFault",
    "ConnectBlackhole",
    "FaultProxy",
    "FaultSchedule",
    "FaultWindow",
    "Firewall",
    "Garbage",
    "Latency",
    "LimitData",
    "ManagedProcess",
    "Namespace",
    "ProxyCounters",
    "Refuse",
    "Reset",
    "RuleFault",
    "ScheduleRunner",
    "Slicer",
    "SlowClose",
    "Timeout",
    "Toxic",
    "ToxicFault",
    "freeze",
    "frozen",
    "kill",
    "parse_toxic",
    "thaw",
]


def __getattr__(name: str) -> Any:
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module 'resilience.faults' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"resilience.faults.{module}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return __all__
