"""The soak's watchers: histogram, resource flatness, stall matching (pure logic)."""

from __future__ import annotations

import pytest

from resilience.soak.watch import BreakerTimeline, Histogram, LagProbe, flat


def test_histogram_percentiles_to_the_millisecond() -> None:
    h = Histogram()
    for ms in range(1, 101):
        h.add(ms / 1000 - 0.0005)
    assert h.count == 100
    assert h.percentile(50) == 0.05
    assert h.percentile(99) == 0.099
    assert abs(h.max - 0.0995) < 1e-9
    h.add(60.0)  # past the last bucket: counted there, max kept exactly
    assert h.max == 60.0 and h.percentile(100) == 60.0


def _samples(threads: list[int], fds: int = 50, rss: float = 100.0) -> list[
        tuple[float, int, int, float]]:
    return [(i * 0.5, t, fds, rss) for i, t in enumerate(threads)]


LIMITS = {"threads": 3, "fds": 16, "rss_mb": 24.0, "rss_ratio": 0.05}


def test_flat_compares_the_first_and_last_quarter_after_warm_up() -> None:
    steady = flat(_samples([40] * 40), 0.0, LIMITS)
    assert steady["threads"]["growth"] == 0 and steady["threads"]["ok"]
    assert steady["rss_mb"]["limit"] == 24.0 + 5.0
    leaking = flat(_samples(list(range(40, 80))), 0.0, LIMITS)  # one thread per sample
    assert not leaking["threads"]["ok"] and leaking["threads"]["growth"] > 3
    # A spike in warm-up (before ``after``) does not count.
    spiky = flat(_samples([90] * 10 + [40] * 40), 5.0, LIMITS)
    assert spiky["threads"]["ok"] and spiky["threads"]["max"] == 40
    assert flat(_samples([40] * 5), 0.0, LIMITS) == {}  # too few samples to judge


def test_stall_during_finds_only_overlapping_stalls() -> None:
    probe = LagProbe()
    probe._add(10.0, 10.01 + 0.2)  # slept at 10.0 for 10 ms, woke 200 ms late
    probe._add(20.0, 20.011)  # 1 ms late: not a stall worth keeping
    assert probe.lateness.count == 2
    assert abs(probe.stall_during(10.1, 10.3) - 0.2) < 1e-9
    assert probe.stall_during(10.3, 10.4) == 0.0
    assert probe.stall_during(19.9, 20.1) == 0.0


def test_a_stall_explains_an_overrun_up_to_one_probe_period_more() -> None:
    probe = LagProbe(period=0.01)
    # A stall that began while the probe slept is seen up to one period short: a call
    # 322.6 ms past its limit through a stall seen as 322.6 ms (a soak's real case) and
    # one 5 ms past what was seen are explained; 20 ms past it is not, nor any overrun
    # without a stall.
    assert probe.explains(0.3226, 0.3226)
    assert probe.explains(0.3226, 0.3276)
    assert not probe.explains(0.3226, 0.3426)
    assert not probe.explains(0.0, 0.001)


def test_recovery_is_heal_to_first_closed_and_later_reopens_are_counted_apart() -> None:
    line = BreakerTimeline()
    for now, closed, phase in [(1.0, False, "warm-up"), (1.2, True, "warm-up"),
                               (5.0, False, "faults"), (9.0, True, "faults"),
                               (10.0, False, "faults"), (10.4, True, "tail"),
                               (20.0, False, "tail"), (20.3, True, "tail")]:
        line.sample(now, closed, phase)
    took, still = line.recovery(healed=10.1, end=30.0)
    assert took == pytest.approx(0.3) and not still
    assert line.opened_after(10.4) == 1 and line.opened["warm-up"] == 1
    assert line.recovery(healed=9.5, end=30.0) == (0.0, False)  # closed at the heal
    line.sample(25.0, False, "tail")  # opens and never closes again
    assert line.recovery(healed=24.0, end=30.0) == (0.0, False)  # closed at the heal
    assert line.recovery(healed=25.5, end=30.0) == (4.5, True)


def test_recovery_when_the_changes_around_the_heal_fell_out_of_the_cap() -> None:
    line = BreakerTimeline(maxlen=4)
    for i in range(10):  # flapping: 20 changes, 4 kept
        line.sample(i + 0.0, False, "faults")
        line.sample(i + 0.5, True, "faults")
    took, still = line.recovery(healed=2.0, end=12.0)
    assert not still and took == pytest.approx(9.5 - 2.0)  # the last closing, not earlier
