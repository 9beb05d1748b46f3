"""pytest fixtures (core); re-exported by resilience.testing.plugin.

``fake_clock``: a fresh `resilience.testing.clock.FakeClock`; hand it to policies
(``Policy(..., clock=fake_clock)``) and to ``resilience.deadline(..., clock=fake_clock)``
so nothing in the test sleeps for real.
"""

from __future__ import annotations

import pytest

from resilience.testing.clock import FakeClock

__all__ = ["fake_clock"]


@pytest.fixture
def fake_clock() -> FakeClock:
    """A fake monotonic clock starting at 1000.0 s; sleeping on it takes no time."""
    return FakeClock()
