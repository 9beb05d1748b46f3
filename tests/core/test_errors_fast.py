"""The pipeline's fast error construction builds the same errors as the constructors."""

from __future__ import annotations

import pickle

import pytest

from resilience.errors import (
    BulkheadFullError,
    CircuitOpenError,
    DeadlineExceededError,
    RejectedError,
    _fast_error,
)


@pytest.mark.parametrize("cls", [CircuitOpenError, BulkheadFullError, DeadlineExceededError])
def test_fast_error_matches_the_keyword_constructor(cls: type[RejectedError]) -> None:
    fields = {"service": "memcache", "endpoint": "10.0.0.1:11211", "operation": "get"}
    fast = _fast_error(cls, elapsed=0.0125, **fields)
    slow = cls(elapsed=0.0125, **fields)
    assert type(fast) is cls and str(fast) == str(slow) and repr(fast) == repr(slow)
    assert (fast.service, fast.endpoint, fast.operation, fast.elapsed) == (
        "memcache",
        "10.0.0.1:11211",
        "get",
        0.0125,
    )
    clone = pickle.loads(pickle.dumps(fast))
    assert str(clone) == str(fast)


def test_timeouts_built_fast_are_still_builtin_timeout_errors() -> None:
    assert isinstance(_fast_error(DeadlineExceededError, "s", "e", "o", 0.0), TimeoutError)


def test_error_messages_name_where_and_how_long() -> None:
    err = CircuitOpenError(
        retry_after=0.25, service="memcache", endpoint="10.0.0.1:11211", operation="get", elapsed=0
    )
    assert (
        str(err)
        == "memcache get on 10.0.0.1:11211: circuit open (after 0.0 ms); retry after 250 ms"
    )
