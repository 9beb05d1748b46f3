"""The control node's validator: what it accepts, and that a bad key or value is
rejected with the key named (pure logic, no server)."""

from __future__ import annotations

import pytest

from resilience import config
from resilience.control import CLIENTS, dumps, parse_assignments, parse_node, validate
from resilience.errors import ConfigError


def test_clients_are_the_registered_clients() -> None:
    """The validator's client names are exactly the clients resilience.clients registers."""
    config.load_clients()
    assert set(CLIENTS) == set(config.CLIENTS)


def test_valid_settings_round_trip() -> None:
    settings = {"memcache.breaker": "forced_open", "cassandra.timeout_ms": 250,
                "memcache@10.0.0.2:11211.breaker": "normal", "nsq.breaker": "disabled",
                "zookeeper.timeout_ms": 1}
    assert parse_node(dumps(settings)) == settings
    assert parse_node(None) == {} and parse_node(b"  ") == {}


def test_assignments_from_the_command_line() -> None:
    assert parse_assignments(["memcache.breaker=forced_closed", "memcache.timeout_ms=50"]) == {
        "memcache.breaker": "forced_closed", "memcache.timeout_ms": 50}


@pytest.mark.parametrize(("settings", "named", "hint"), [
    ({"memcahce.breaker": "forced_open"}, "memcahce.breaker", "did you mean 'memcache'"),
    ({"memcache.breakr": "forced_open"}, "memcache.breakr", "did you mean 'breaker'"),
    ({"memcache.breaker": "forced-open"}, "memcache.breaker", "did you mean 'forced_open'"),
    ({"memcache.breaker": 1}, "memcache.breaker", "expected one of"),
    ({"memcache.timeout_ms": "50"}, "memcache.timeout_ms", "whole number"),
    ({"memcache.timeout_ms": 0}, "memcache.timeout_ms", ">= 1"),
    ({"memcache.timeout_ms": 2.5}, "memcache.timeout_ms", "whole number"),
    ({"memcache.timeout_ms": True}, "memcache.timeout_ms", "whole number"),
    ({"memcache@h:1.timeout_ms": 5}, "memcache@h:1.timeout_ms", "per client"),
    ({"zookeeper.breaker": "forced_open"}, "zookeeper.breaker", "follows its session"),
    ({"breaker": "forced_open"}, "breaker", "<client>.<setting>"),
])
def test_bad_key_or_value_names_the_key(settings: dict[str, object], named: str,
                                        hint: str) -> None:
    good = {"nsq.breaker": "forced_open"}
    with pytest.raises(ConfigError) as err:
        validate({**good, **settings})
    assert repr(named) in str(err.value) and hint in str(err.value)


@pytest.mark.parametrize(("data", "hint"), [
    (b"[1, 2]", "expected a JSON object"),
    (b"{memcache.breaker: 1}", "not UTF-8 JSON"),
    (b"\xff\xfe", "not UTF-8 JSON"),
])
def test_malformed_node_is_rejected(data: bytes, hint: str) -> None:
    with pytest.raises(ConfigError, match=hint):
        parse_node(data)


@pytest.mark.parametrize("item", ["memcache.breaker", "memcache.timeout_ms=fast",
                                  "memcache.breaker=open"])
def test_bad_assignment_names_it(item: str) -> None:
    with pytest.raises(ConfigError, match="memcache"):
        parse_assignments([item])
