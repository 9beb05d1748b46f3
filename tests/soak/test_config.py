"""The soak's settings, seeded schedules and NSQ ledger: pure logic, no server."""

from __future__ import annotations

import pytest

from resilience.soak.config import SoakConfig
from resilience.soak.ledger import Ledger
from resilience.soak.targets import DATASTORES


def test_same_seed_gives_the_same_schedules_and_another_seed_others() -> None:
    a, b, other = SoakConfig(seed=42), SoakConfig(seed=42), SoakConfig(seed=43)
    for ds in DATASTORES:
        assert a.schedule(ds) == b.schedule(ds)
        assert a.fingerprint(ds) == b.fingerprint(ds)
        assert a.schedule(ds).windows != other.schedule(ds).windows
    # Each datastore gets its own schedule, so faults overlap across datastores.
    assert len({a.fingerprint(ds) for ds in DATASTORES}) == len(DATASTORES)


def test_schedules_fill_the_fault_phase_only() -> None:
    config = SoakConfig(seconds=60, seed=1)
    assert config.warmup + config.fault_phase + config.tail == pytest.approx(60)
    assert config.tail >= 5 * config.recovery
    for ds in DATASTORES:
        windows = config.schedule(ds).windows
        assert windows, ds
        assert windows[-1].end <= config.fault_phase + 1e-6
        assert {w.fault for w in windows} <= set(config.faults)


def test_position_names_the_window_to_replay() -> None:
    config = SoakConfig(seconds=60, seed=9)
    w = config.schedule("nsq").windows[1]
    inside = config.position("nsq", config.warmup + (w.start + w.end) / 2)
    assert f"window #1 {w.fault}" in inside
    assert "warm-up" in config.position("nsq", 0.5)
    assert "healthy tail" in config.position("nsq", 59.0)
    assert config.replay_command().startswith("resilience soak --seconds 60 --seed 9 ")
    assert "--budget-ms 50" in SoakConfig(budget=0.05).replay_command()


@pytest.mark.parametrize(("kwargs", "named"), [
    ({"datastores": ("memcached", "redis")}, "redis"),
    ({"datastores": ()}, "datastores"),
    ({"datastores": ("nsq", "nsq")}, "twice"),
    ({"seconds": 5}, "seconds=5"),
    ({"budget": 0}, "budget=0"),
    ({"slack": -0.1}, "slack=-0.1"),
    ({"threads": 0}, "threads=0"),
    ({"faults": ("frozen", "flood")}, "faults="),
])
def test_bad_settings_raise_naming_the_setting(kwargs: dict[str, object], named: str) -> None:
    with pytest.raises(ValueError, match=named):
        SoakConfig(**kwargs)  # type: ignore[arg-type]


def test_ledger_matches_acks_and_deliveries_in_either_order() -> None:
    ledger = Ledger()
    ledger.acked("a")
    ledger.consumed("a")
    ledger.consumed("b")  # delivered before its publish returned
    ledger.acked("b")
    ledger.acked("c")  # acknowledged, never delivered
    ledger.consumed("d")  # delivered, its publish raised
    ledger.consumed("a")  # a duplicate the seen-store let through
    assert not ledger.wait_drained(0.05)
    assert ledger.summary() == {"acknowledged": 3, "consumed": 4, "matched": 2, "lost": 1,
                                "consumed_unacknowledged": 1, "duplicates_past_dedup": 1}
    ledger.consumed("c")
    assert ledger.wait_drained(0.05)


def test_ledger_refuses_unkeyed_messages() -> None:
    with pytest.raises(ValueError, match="key"):
        Ledger().acked(None)
    with pytest.raises(ValueError, match="key"):
        Ledger().consumed(None)


def test_command_rejects_a_bad_argument_before_starting_anything(
        capsys: pytest.CaptureFixture[str]) -> None:
    from resilience.cli import main

    assert main(["soak", "--seconds", "30", "--datastores", "memcached,redis"]) == 2
    assert "unknown redis" in capsys.readouterr().err
