"""Fault schedules: seeded generation replays exactly; the runner applies faults on time."""

from __future__ import annotations

import socket
import time

import pytest

from resilience.faults.proxy import FaultProxy
from resilience.faults.schedule import (
    CallbackFault,
    FaultSchedule,
    FaultWindow,
    ScheduleRunner,
    ToxicFault,
)
from resilience.faults.toxics import Blackhole

from ._echo import EchoServer

NAMES = ["blackhole", "latency", "frozen"]


def test_same_seed_gives_the_same_schedule() -> None:
    a = FaultSchedule.generate(5, NAMES, 60)
    assert a == FaultSchedule.generate(5, NAMES, 60)
    assert a != FaultSchedule.generate(6, NAMES, 60)


def test_windows_stay_in_bounds_and_never_overlap() -> None:
    s = FaultSchedule.generate(1, NAMES, 30, gap=(0.1, 0.5), duration=(0.2, 0.4))
    assert len(s.windows) > 10
    for w in s.windows:
        assert w.start > 0 and w.end <= 30 + 1e-6 and w.fault in NAMES
        assert w.duration <= 0.4 + 1e-9
    for a, b in zip(s.windows, s.windows[1:], strict=False):
        assert b.start - a.end >= 0.1 - 1e-6
    assert {w.fault for w in s.windows} == set(NAMES)


def test_json_round_trip_is_exact() -> None:
    s = FaultSchedule.generate(9, NAMES, 20)
    assert FaultSchedule.from_json(s.to_json()) == s


def test_active_at_reports_the_window_in_force() -> None:
    s = FaultSchedule(0, 3, (FaultWindow(1.0, 0.5, "x"),))
    assert (s.active_at(0.9), s.active_at(1.2), s.active_at(1.5)) == ([], ["x"], [])


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [({"faults": []}, "faults"), ({"total": 0}, "total"), ({"gap": (2, 1)}, "gap"),
     ({"duration": (-1, 1)}, "duration")],
)
def test_bad_arguments_are_named(kwargs: dict[str, object], match: str) -> None:
    args: dict[str, object] = {"seed": 1, "faults": NAMES, "total": 5} | kwargs
    with pytest.raises(ValueError, match=match):
        FaultSchedule.generate(**args)  # type: ignore[arg-type]


def test_runner_rejects_a_fault_with_no_implementation() -> None:
    s = FaultSchedule(0, 1, (FaultWindow(0.1, 0.1, "ghost"),))
    with pytest.raises(ValueError, match="ghost"):
        ScheduleRunner(s, {})


def test_runner_applies_and_removes_on_time() -> None:
    calls: list[tuple[str, float]] = []
    t0 = time.monotonic()
    fault = CallbackFault(lambda: calls.append(("on", time.monotonic() - t0)),
                          lambda: calls.append(("off", time.monotonic() - t0)))
    s = FaultSchedule(0, 0.8, (FaultWindow(0.1, 0.2, "f"), FaultWindow(0.4, 0.2, "f")))
    runner = ScheduleRunner(s, {"f": fault}).start()
    assert runner.join(3)
    assert [c[0] for c in calls] == ["on", "off", "on", "off"]
    for (_, at), want in zip(calls, [0.1, 0.3, 0.4, 0.6], strict=True):
        assert want - 0.01 <= at < want + 0.25
    assert [e[1] for e in runner.log] == ["apply", "remove", "apply", "remove"]


def test_stopping_early_removes_the_applied_fault() -> None:
    state = {"on": False}
    fault = CallbackFault(lambda: state.update(on=True), lambda: state.update(on=False))
    s = FaultSchedule(0, 10, (FaultWindow(0.05, 9.0, "f"),))
    with ScheduleRunner(s, {"f": fault}) as runner:
        deadline = time.monotonic() + 2
        while not state["on"] and time.monotonic() < deadline:
            time.sleep(0.01)
        assert state["on"]
        t0 = time.monotonic()
    assert time.monotonic() - t0 < 1.0
    assert not state["on"] and runner.log[-1][1] == "remove"


def test_a_failing_fault_is_recorded_and_the_run_goes_on() -> None:
    def boom() -> None:
        raise OSError("iptables failed")

    ok: list[str] = []
    s = FaultSchedule(0, 0.4, (FaultWindow(0.05, 0.05, "bad"), FaultWindow(0.15, 0.05, "ok")))
    runner = ScheduleRunner(s, {"bad": CallbackFault(boom, lambda: None),
                                "ok": CallbackFault(lambda: ok.append("on"), lambda: None)})
    runner.start()
    assert runner.join(3)
    assert ok == ["on"] and runner.errors[0][0] == "bad"


def test_a_scheduled_blackhole_hangs_and_releases_a_proxied_connection() -> None:
    with EchoServer() as echo, FaultProxy(echo.address) as proxy:
        s = FaultSchedule(0, 0.9, (FaultWindow(0.1, 0.5, "blackhole"),))
        runner = ScheduleRunner(s, {"blackhole": ToxicFault(proxy, Blackhole())}).start()
        with socket.create_connection(proxy.address, timeout=0.2) as c:
            time.sleep(0.2)
            c.sendall(b"x")
            with pytest.raises(TimeoutError):
                c.recv(1)
            assert runner.join(3)
            assert proxy.toxics == []
            c.settimeout(1)
            c.sendall(b"y")
            assert c.recv(1) == b"y"
