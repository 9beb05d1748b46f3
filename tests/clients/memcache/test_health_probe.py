"""Background health probes against a real memcached: recovery within ~1 s of the heal.

The breaker's open interval grows on every failed user probe (here 0.2 s up to 3 s);
after an outage long enough for it to reach the cap, user-traffic probing alone finds
the healed node up to 3 s late. The prober (memcached ``version`` every 0.25 s) turns
the breaker half-open as soon as the node answers, whatever the outage's length.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from typing import Any

from resilience.core.breaker import BreakerState
from resilience.core.prober import SHARED
from resilience.errors import ResilienceError
from tests.clients.memcache.conftest import Client, MakeClient

# Open 0.2 s, growing x2 per failed probe up to 3 s: 4 s of outage reach the cap.
GROWING: dict[str, Any] = {"breaker_open_duration": 0.2, "breaker_max_open_duration": 3.0}


def _pause(client: Client, seconds: float) -> None:
    # The async client's prober is a task on the test's loop: let the loop run.
    if client.loop is not None:
        client.loop.run_until_complete(asyncio.sleep(seconds))
    else:
        time.sleep(seconds)


def _heal_delay(client: Client, node: Any, outage: float) -> float:
    """Freeze ``node`` for ``outage`` seconds under traffic, thaw it, and return the
    seconds from the thaw to the first successful get."""
    client.set("k", "v")
    node.freeze()
    try:
        end = time.monotonic() + outage
        while time.monotonic() < end:
            with contextlib.suppress(ResilienceError):
                client.get("k")
            _pause(client, 0.02)
        # Thaw just after a user probe failed at the cap: user traffic alone would now
        # wait out most of 3 s. Bounded: the cap comes back every 3 s.
        breaker = client.breaker(node.address)
        end = time.monotonic() + 4.0
        while time.monotonic() < end:
            snap = breaker.snapshot(time.monotonic())
            if snap["open_interval"] >= 3.0 and snap["retry_after"] > 2.0:
                break
            with contextlib.suppress(ResilienceError):
                client.get("k")
            _pause(client, 0.02)
        else:
            raise AssertionError(f"the open interval never reached its cap: {snap}")
    finally:
        node.thaw()
    healed = time.monotonic()
    while time.monotonic() - healed < 10.0:
        try:
            assert client.get("k") == b"v"
            return time.monotonic() - healed
        except ResilienceError:
            _pause(client, 0.02)
    raise AssertionError("no successful call within 10 s of the heal")


def test_first_success_within_a_second_of_the_heal(make_client: MakeClient,
                                                   memcached: Any) -> None:
    client = make_client([memcached.address], **GROWING)
    assert client.breaker(memcached.address).snapshot(time.monotonic())["state"] == "closed"
    delay = _heal_delay(client, memcached, 4.0)
    # Loose: the probe interval is 0.25 s (+-25%) and a frozen probe times out at 0.25 s.
    assert delay < 1.0, f"first success {delay:.2f} s after the heal"


def test_probing_stops_when_the_breaker_closes(make_client: MakeClient,
                                               memcached: Any) -> None:
    client = make_client([memcached.address], **GROWING)
    _heal_delay(client, memcached, 1.0)
    probing = client.cache._probing
    assert probing is not None
    deadline = time.monotonic() + 3.0
    while probing.running and time.monotonic() < deadline:
        _pause(client, 0.05)
    assert not probing.running


def test_no_prober_thread_left_after_close(make_client: MakeClient, memcached: Any) -> None:
    client = make_client([memcached.address], **GROWING)
    client.set("k", "v")
    memcached.freeze()
    try:
        for _ in range(8):
            with contextlib.suppress(ResilienceError):
                client.get("k")
        assert client.breaker(memcached.address).state(time.monotonic()) is BreakerState.OPEN
        probing = client.cache._probing
        assert probing is not None
        assert probing.running or client.is_async
        client.close()
        assert not probing.running
    finally:
        memcached.thaw()
    if not client.is_async:
        deadline = time.monotonic() + 2.0  # a probe in flight ends within its timeout
        while SHARED.running and time.monotonic() < deadline:
            time.sleep(0.02)
        assert not any(t.name == "resilience-prober" for t in threading.enumerate())


def test_option_turns_it_off(make_client: MakeClient, memcached: Any) -> None:
    client = make_client([memcached.address], breaker_health_probe=False)
    assert client.cache._probing is None


def test_without_the_prober_recovery_waits_for_the_open_interval(
        make_client: MakeClient, memcached: Any) -> None:
    """What the prober fixes: with it off, the breaker admits a user probe only when its
    grown interval (3 s here, more than 2 s of it left at the thaw) has passed."""
    client = make_client([memcached.address], breaker_health_probe=False, **GROWING)
    assert _heal_delay(client, memcached, 4.0) > 1.5
