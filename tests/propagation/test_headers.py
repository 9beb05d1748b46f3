"""Parsing and formatting of the deadline headers (pure functions)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from resilience.propagation import (
    Budget,
    MalformedHeaderError,
    format_grpc_timeout,
    format_ms,
    parse_grpc_timeout,
    parse_ms,
    read_budget,
)


@pytest.mark.parametrize(("value", "seconds"), [
    ("1H", 3600.0), ("2M", 120.0), ("3S", 3.0), ("250m", 0.25), ("750u", 0.00075),
    ("5000n", 0.000005), ("0m", 0.0), ("99999999S", 99999999.0), (" 100m ", 0.1),
])
def test_grpc_timeout_units(value: str, seconds: float) -> None:
    assert parse_grpc_timeout(value) == pytest.approx(seconds)


@pytest.mark.parametrize("value", [
    "", "m", "100", "100x", "100ms", "-5m", "+5m", "1.5S", "123456789m", "1 0m", "٣m",
    "²S", "0x10S", "1e3m",
])
def test_malformed_grpc_timeout_raises_naming_the_header(value: str) -> None:
    with pytest.raises(MalformedHeaderError, match="grpc-timeout"):
        parse_grpc_timeout(value)


@pytest.mark.parametrize("value", ["", "-1", "+5", "1.5", "abc", "1e3", "9" * 13, "٣"])
def test_malformed_ms_raises_naming_the_header(value: str) -> None:
    with pytest.raises(MalformedHeaderError, match="connect-timeout-ms"):
        parse_ms(value, "connect-timeout-ms")


def test_ms_accepts_up_to_twelve_digits() -> None:
    assert parse_ms("250") == 0.25
    assert parse_ms("0") == 0.0
    assert parse_ms("9" * 12) == pytest.approx(999999999.999)


@pytest.mark.parametrize(("seconds", "text"), [
    (0.05, "50000000n"), (0.25, "250000u"), (1.5, "1500000u"), (30.0, "30000000u"),
    (100.0, "100000m"), (1e6, "1000000S"), (1e9, "16666666M"), (1e12, "99999999H"),
    (1e-12, "1n"),
])
def test_grpc_timeout_format_picks_the_finest_unit_within_8_digits(
        seconds: float, text: str) -> None:
    assert format_grpc_timeout(seconds) == text


@given(st.floats(min_value=1e-9, max_value=1e10, allow_nan=False))
def test_grpc_timeout_round_trip_never_grants_more(seconds: float) -> None:
    back = parse_grpc_timeout(format_grpc_timeout(seconds))
    assert back <= seconds * (1 + 1e-9) or back == 1e-9  # at least 1n for a positive budget
    assert back >= seconds * (1 - 1.1e-5) - 1e-9  # one unit of 10^5 at worst


@pytest.mark.parametrize("bad", [0.0, -1.0, float("nan")])
def test_grpc_timeout_format_refuses_no_budget(bad: float) -> None:
    with pytest.raises(ValueError, match="seconds > 0"):
        format_grpc_timeout(bad)


def test_ms_format_rounds_down_and_calls_under_a_millisecond_spent() -> None:
    assert format_ms(0.2999) == "299"
    assert format_ms(0.001) == "1"
    assert format_ms(0.0009) is None
    assert format_ms(0.0) is None
    assert format_ms(-3.0) is None


def test_read_budget_takes_the_smallest_well_formed_header() -> None:
    headers = [("Request-Timeout-Ms", "900"), ("connect-timeout-ms", "700"),
               ("X-Envoy-Expected-Rq-Timeout-Ms", "800"), ("grpc-timeout", "1S")]
    assert read_budget(headers) == Budget(0.7, "connect-timeout-ms", ())
    assert read_budget(headers, grpc=True).seconds == 0.7
    assert read_budget([("grpc-timeout", "300m"), *headers], grpc=True) == Budget(
        0.3, "grpc-timeout", ())


def test_read_budget_ignores_grpc_timeout_on_non_grpc_content() -> None:
    assert read_budget([("grpc-timeout", "300m")]) == Budget(None, None, ())


def test_read_budget_ignores_and_reports_malformed_headers() -> None:
    budget = read_budget([("request-timeout-ms", "-5"), ("connect-timeout-ms", "0.3"),
                          ("x-envoy-expected-rq-timeout-ms", "400"),
                          ("grpc-timeout", "5 S")], grpc=True)
    assert budget.seconds == 0.4
    assert budget.malformed == ("request-timeout-ms", "connect-timeout-ms", "grpc-timeout")


def test_read_budget_honours_a_configured_own_header() -> None:
    """The configured name replaces request-timeout-ms."""
    assert read_budget([("x-budget-ms", "120")], own_header="X-Budget-Ms").seconds == 0.12
    assert read_budget([("request-timeout-ms", "50")], own_header="x-budget-ms").seconds is None
