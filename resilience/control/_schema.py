"""What a control node may hold, and its one validator (no I/O).

The node ``<root>/<service>`` (default root ``/resilience/control``) holds one JSON
object of settings::

    {"memcache.breaker": "forced_open",
     "memcache@10.0.0.2:11211.breaker": "normal",
     "cassandra.timeout_ms": 250}

Keys are ``<client>.<setting>`` or, for a breaker, ``<client>@<endpoint>.breaker`` (one
endpoint; it beats the client-wide key). ``<client>`` is a client's service name
(:data:`CLIENTS`). Settings:

- ``breaker``: ``forced_open`` (reject every call), ``forced_closed`` (admit every
  call, record nothing), ``disabled`` (as forced_closed), ``normal`` (the same as no
  key: a breaker that control forced goes back to CLOSED; one it never touched is left
  as it is). Not for ``zookeeper``: that client's breaker follows its session.
- ``timeout_ms``: whole milliseconds, 1..86400000: the default budget of every later
  call of the client (a call given ``timeout=`` keeps its own).

Everything is checked before anything is applied or written: one bad key or value
rejects the whole node (``ConfigError`` naming the key), and an agent keeps the data it
had.
"""

from __future__ import annotations

import difflib
import json
import re
from collections.abc import Iterable, Mapping
from typing import Any

from resilience.errors import ConfigError

__all__ = [
    "BREAKER_MODES",
    "CLIENTS",
    "Settings",
    "dumps",
    "parse_assignments",
    "parse_node",
    "validate",
]

# The service names of the clients in resilience.clients; tests/control keeps this true
# (read here without importing the clients, which would import every driver).
CLIENTS = ("cassandra", "elasticsearch", "memcache", "nsq", "opensearch", "zookeeper")
BREAKER_MODES = ("forced_open", "forced_closed", "disabled", "normal")
MAX_TIMEOUT_MS = 86_400_000

_KEY = re.compile(r"^(?P<client>[a-z][a-z0-9]*)(?:@(?P<endpoint>[^\s@]+))?\.(?P<setting>[a-z_]+)$")

Settings = dict[str, Any]
"""Validated settings: key -> a breaker mode (str) or a timeout in ms (int)."""


def _suggest(word: str, choices: Iterable[str]) -> str:
    close = difflib.get_close_matches(word, list(choices), n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


def check_key(key: object) -> tuple[str, str | None, str]:
    """``(client, endpoint or None, setting)`` of a valid key.

    Raises:
        ConfigError: the key is malformed, names an unknown client or setting, or a
            setting that cannot be set where it is.
    """
    if not isinstance(key, str):
        raise ConfigError(f"control key {key!r}: expected a string")
    m = _KEY.match(key)
    if m is None:
        raise ConfigError(f"control key {key!r}: expected <client>.<setting> or "
                          "<client>@<endpoint>.breaker, e.g. memcache.breaker")
    client, endpoint, setting = m["client"], m["endpoint"], m["setting"]
    if client not in CLIENTS:
        raise ConfigError(f"control key {key!r}: unknown client {client!r}"
                          f"{_suggest(client, CLIENTS)}; expected one of {', '.join(CLIENTS)}")
    if setting not in ("breaker", "timeout_ms"):
        raise ConfigError(f"control key {key!r}: unknown setting {setting!r}"
                          f"{_suggest(setting, ('breaker', 'timeout_ms'))}; "
                          "expected breaker or timeout_ms")
    if setting == "timeout_ms" and endpoint is not None:
        raise ConfigError(f"control key {key!r}: timeout_ms is set per client, not per "
                          f"endpoint; use {client}.timeout_ms")
    if setting == "breaker" and client == "zookeeper":
        raise ConfigError(f"control key {key!r}: the zookeeper client's breaker follows its "
                          "session and cannot be controlled")
    return client, endpoint, setting


def _check_value(key: str, setting: str, value: object) -> object:
    if setting == "breaker":
        if value not in BREAKER_MODES or not isinstance(value, str):
            raise ConfigError(f"control key {key!r}: value {value!r}"
                              f"{_suggest(str(value), BREAKER_MODES)}; "
                              f"expected one of {', '.join(BREAKER_MODES)}")
        return value
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= MAX_TIMEOUT_MS:
        raise ConfigError(f"control key {key!r}: value {value!r}: expected a whole number "
                          f"of milliseconds >= 1 and <= {MAX_TIMEOUT_MS}")
    return value


def validate(settings: object) -> Settings:
    """The settings, checked: a mapping of valid keys to valid values.

    Raises:
        ConfigError: not a mapping, or a bad key or value (named in the message).
    """
    if not isinstance(settings, Mapping):
        raise ConfigError(f"control data: expected a JSON object of settings, got "
                          f"{type(settings).__name__}")
    out: Settings = {}
    for key, value in settings.items():
        _client, _endpoint, setting = check_key(key)
        out[key] = _check_value(key, setting, value)
    return out


def parse_node(data: bytes | None) -> Settings:
    """The settings in a node's data; empty for no node or empty data.

    Raises:
        ConfigError: not UTF-8 JSON, or not valid settings (see :func:`validate`).
    """
    if not data or not data.strip():
        return {}
    try:
        loaded = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as exc:
        raise ConfigError(f"control data: not UTF-8 JSON: {exc}") from exc
    return validate(loaded)


def parse_assignments(items: Iterable[str]) -> Settings:
    """``key=value`` strings (the command line) as settings: ``timeout_ms`` values are
    whole numbers, ``breaker`` values as written.

    Raises:
        ConfigError: no ``=``, or a bad key or value (named).
    """
    out: dict[str, object] = {}
    for item in items:
        key, sep, raw = item.partition("=")
        if not sep:
            raise ConfigError(f"control setting {item!r}: expected key=value, "
                              "e.g. memcache.breaker=forced_open")
        key, raw = key.strip(), raw.strip()
        setting = check_key(key)[2]
        value: object = raw
        if setting == "timeout_ms":
            try:
                value = int(raw)
            except ValueError:
                value = raw  # rejected below, with the key named
        out[key] = value
    return validate(out)


def dumps(settings: Settings) -> bytes:
    """The node data for ``settings`` (sorted keys, so equal settings are equal bytes)."""
    return json.dumps(settings, sort_keys=True, separators=(",", ":")).encode()
