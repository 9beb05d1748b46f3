"""The ambient deadline: nesting, reading, async cancellation and carrying into threads."""

from __future__ import annotations

import asyncio
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from resilience.core.deadline import current_deadline, deadline, propagate, remaining, submit
from resilience.errors import ConfigError, DeadlineExceededError
from resilience.testing.clock import FakeClock


def test_no_deadline_outside_any_block() -> None:
    assert current_deadline() is None and remaining() is None


def test_deadline_is_an_absolute_instant_restored_on_exit(fake_clock: FakeClock) -> None:
    with deadline(0.2, clock=fake_clock) as d:
        assert current_deadline() == d.at == pytest.approx(fake_clock.monotonic() + 0.2)
    assert current_deadline() is None


def test_nested_deadline_only_shrinks(fake_clock: FakeClock) -> None:
    with deadline(0.2, clock=fake_clock) as outer:
        with deadline(5.0, clock=fake_clock):
            assert current_deadline() == outer.at
        with deadline(0.05, clock=fake_clock) as inner:
            assert current_deadline() == inner.at < outer.at
        assert current_deadline() == outer.at


def test_remaining_counts_down_and_stops_at_zero(fake_clock: FakeClock) -> None:
    with deadline(0.2, clock=fake_clock):
        fake_clock.advance(0.15)
        assert remaining(fake_clock) == pytest.approx(0.05)
        fake_clock.advance(1.0)
        assert remaining(fake_clock) == 0.0


@pytest.mark.parametrize("bad", [-1, float("nan"), float("inf"), "0.2", True])
def test_bad_seconds_raise_a_config_error_naming_the_argument(bad: object) -> None:
    with pytest.raises(ConfigError, match=r"deadline\(seconds="):
        deadline(bad)  # type: ignore[arg-type]


def test_a_deadline_object_cannot_be_entered_twice(fake_clock: FakeClock) -> None:
    d = deadline(1.0, clock=fake_clock)
    with d, pytest.raises(RuntimeError), d:
        pass


async def test_async_with_cancels_plain_awaits_at_the_deadline() -> None:
    started = time.monotonic()
    with pytest.raises(DeadlineExceededError):
        async with deadline(0.05):
            await asyncio.sleep(10)
    assert time.monotonic() - started < 1.0
    assert current_deadline() is None


async def test_async_with_reports_the_time_spent_not_the_inner_budget() -> None:
    # The outer block is sync (it arms no timer): the inner block's timer fires, at the
    # outer, earlier instant.
    with pytest.raises(DeadlineExceededError) as caught, deadline(0.05):
        async with deadline(30.0):
            await asyncio.sleep(10)
    assert caught.value.elapsed is not None and 0.04 <= caught.value.elapsed < 1.0


async def test_async_with_is_transparent_when_the_block_finishes_in_time() -> None:
    async with deadline(1.0) as d:
        await asyncio.sleep(0)
        assert current_deadline() == d.at


async def test_tasks_inherit_the_deadline(fake_clock: FakeClock) -> None:
    with deadline(0.3, clock=fake_clock) as d:
        seen = await asyncio.create_task(_read_deadline())
    assert seen == d.at


async def _read_deadline() -> float | None:
    return current_deadline()


def test_plain_threads_do_not_see_the_deadline_but_propagated_ones_do(
    fake_clock: FakeClock,
) -> None:
    seen: dict[str, float | None] = {}

    def look(key: str) -> None:
        seen[key] = current_deadline()

    with deadline(0.3, clock=fake_clock) as d:
        plain = threading.Thread(target=look, args=("plain",))
        bound = threading.Thread(target=propagate(look), args=("bound",))
        for t in (plain, bound):
            t.start()
            t.join(timeout=5)
    assert seen == {"plain": None, "bound": d.at}


def test_submit_carries_the_deadline_into_an_executor(fake_clock: FakeClock) -> None:
    with ThreadPoolExecutor(max_workers=2) as pool, deadline(0.3, clock=fake_clock) as d:
        futures = [submit(pool, current_deadline) for _ in range(4)]
        assert [f.result(timeout=5) for f in futures] == [d.at] * 4
