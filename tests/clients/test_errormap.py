"""Error maps (driver exception -> resilience error) and idempotency tables."""

from __future__ import annotations

import pytest

from resilience.clients._errormap import ErrorMap, idempotency_table
from resilience.errors import BackendTimeoutError, BackendUnavailableError


def test_error_map_takes_the_first_matching_rule_and_keeps_the_context() -> None:
    table = ErrorMap([
        (TimeoutError, BackendTimeoutError, "timed out"),
        (OSError, BackendUnavailableError, "socket error"),
    ])
    err = table.translate(TimeoutError("x"), service="s", endpoint="h:1", operation="get")
    assert isinstance(err, BackendTimeoutError)
    assert (err.service, err.endpoint, err.operation) == ("s", "h:1", "get")
    assert isinstance(table.translate(ConnectionResetError(), service="s", endpoint=None,
                                      operation="get"), BackendUnavailableError)
    plain = KeyError("k")
    assert table.translate(plain, service="s", endpoint=None, operation="get") is plain


def test_error_map_refuses_a_rule_shadowed_by_an_earlier_one() -> None:
    with pytest.raises(ValueError, match="unreachable"):
        ErrorMap([(OSError, BackendUnavailableError, "os"),
                  (TimeoutError, BackendTimeoutError, "timeout")])


def test_idempotency_table_is_read_only_and_checks_values() -> None:
    table = idempotency_table({"get": True})
    with pytest.raises(TypeError):
        table["get"] = False  # type: ignore[index]
    with pytest.raises(TypeError):
        idempotency_table({"get": 1})  # type: ignore[dict-item]
