"""Configuration from the environment (docs/architecture.md#env-config): resolve(), keys, errors."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from resilience import config
from resilience.clients.memcache import MemcacheOptions
from resilience.config import (
    BreakerOptions,
    ClientOptions,
    OptionKey,
    RetryOptions,
    option_keys,
    resolve,
)
from resilience.errors import ConfigError

config.load_clients()
# Every key of every registered client, straight from dataclasses.fields (not hand-listed).
ALL_KEYS = [(c, k) for c in sorted(config.CLIENTS) for k in option_keys(config.CLIENTS[c])]
IDS = [f"{c}-{k.env}" for c, k in ALL_KEYS]
M = "RESILIENCE_MEMCACHE_"


def _ms(seconds: float) -> int:
    return math.ceil(seconds * 1000 - 1e-9)


def _max_ms(k: OptionKey) -> int:
    """The largest duration ``k`` accepts, in ms (its own ``max``, else 24 h)."""
    return _ms(k.meta["max"]) if "max" in k.meta else 86400000


def valid_env(k: OptionKey) -> list[tuple[str, Any]]:
    """(environment value, expected Python value) pairs that ``k`` accepts."""
    lo = k.meta.get("min", 0)
    if k.kind == "duration":
        hi = _max_ms(k)
        return [(str(_ms(lo)), _ms(lo) / 1000), (f" {_ms(lo) + 250} ", (_ms(lo) + 250) / 1000),
                (str(hi), hi / 1000)]
    if k.kind == "int":
        out = [(str(lo), lo), (f"+{lo + 3}", lo + 3)]
        return out + ([(str(k.meta["max"]), k.meta["max"])] if "max" in k.meta else [])
    if k.kind == "float":
        return [(str(lo), float(lo)), (f"{lo + 0.5}", lo + 0.5), ("1e1", 10.0)]
    if k.kind == "ratio":
        out = [("1", 1.0), ("0.25", 0.25), (".5", 0.5)]
        return out + ([] if k.meta.get("min_exclusive") else [("0", 0.0)])
    if k.kind == "bool":
        return [(r, r.lower() in ("1", "true", "yes", "on"))
                for r in ("1", "0", "TRUE", "false", "Yes", "no", "On", "OFF")]
    if k.kind == "choice":
        return [(c, c) for c in k.meta["choices"]] + [(k.meta["choices"][0].upper(),
                                                       k.meta["choices"][0])]
    if k.kind == "list":
        return [("h1:1, [::1]:65535 ,,", ("h1:1", "[::1]:65535")), ("h2:11211", ("h2:11211",))]
    return [("x", "x"), (" a b ", "a b")]


def invalid_env(k: OptionKey) -> list[str]:
    """Environment values ``k`` must reject."""
    lo = k.meta.get("min", 0)
    out = ["", "  "]
    if k.kind == "duration":
        out += ["fast", "1.5", "-1", "1e3", str(_max_ms(k) + 1), "\uff15"]  # fullwidth 5: not ASCII
        out += [str(_ms(lo) - 1)] if _ms(lo) > 0 else []
    elif k.kind == "int":
        out += ["x", "1.0", str(lo - 1)] + ([str(k.meta["max"] + 1)] if "max" in k.meta else [])
    elif k.kind == "float":
        out += ["x", "nan", "inf", str(lo - 1)]
    elif k.kind == "ratio":
        out += ["1.5", "-0.1", "50%", "nan"] + (["0"] if k.meta.get("min_exclusive") else [])
    elif k.kind == "bool":
        out += ["maybe", "2", "y"]
    elif k.kind == "choice":
        out += ["bogus"]
    elif k.kind == "list":
        out += [",", " , "] + (["h:0", "h:65536", "h:1,:2", "h:x"]
                               if "validate" in k.meta else [])
        # A bare host is a whole item only where the port may be left out.
        out += ["host"] if str(k.meta.get("item", "")).startswith("host:port") else []
    return out


def invalid_python(k: OptionKey) -> list[Any]:
    """Python values ``k`` must reject as a constructor argument."""
    if k.kind in ("duration", "float", "ratio"):
        return ["100", True, math.nan, math.inf, -1]
    if k.kind == "int":
        return [1.5, True, "3", k.meta.get("min", 0) - 1]
    if k.kind == "bool":
        return [1, "true"]
    if k.kind == "choice":
        return ["bogus", k.meta["choices"][0].upper()]
    if k.kind == "list":
        return [[], [1], ""] + ([("h:0",)] if "validate" in k.meta else [])
    if k.meta.get("optional"):  # "" means "not set"; blank is still wrong
        return ["  ", 3]
    return ["", 3]


def value_at(options: Any, k: OptionKey) -> Any:
    for part in k.path:
        options = getattr(options, part)
    return options


def room(client: str, k: OptionKey, prefix: str) -> dict[str, str]:
    """Variables that move k's ordered partner (metadata at_least) out of the way."""
    out = {}
    for other in option_keys(config.CLIENTS[client]):
        if other.path[:-1] != k.path[:-1]:
            continue
        if other.meta.get("at_least") == k.path[-1]:  # k must stay <= other: raise other
            out[prefix + other.env] = str(_max_ms(other))
        if k.meta.get("at_least") == other.path[-1]:  # k must stay >= other: lower other
            out[prefix + other.env] = str(_ms(other.meta.get("min", 0)))
    return out


def run(cls: type[ClientOptions] = MemcacheOptions, client: str = "memcache",
        env: dict[str, str] | None = None, **kw: Any) -> config.Resolved[Any]:
    return resolve(cls, client=client, environ=env or {}, **kw)


@pytest.mark.parametrize(("client", "k"), ALL_KEYS, ids=IDS)
def test_every_key_accepts_its_valid_values(client: str, k: OptionKey) -> None:
    """Each valid environment value becomes the expected Python value, sourced from its variable."""
    var = f"RESILIENCE_{client.upper()}_{k.env}"
    for raw, expected in valid_env(k):
        env = {var: raw, **room(client, k, f"RESILIENCE_{client.upper()}_")}
        resolved = run(config.CLIENTS[client], client, env)
        assert value_at(resolved.options, k) == expected, raw
        assert resolved.source(k.env) == var


@pytest.mark.parametrize(("client", "k"), ALL_KEYS, ids=IDS)
def test_every_key_rejects_invalid_values_naming_variable_value_and_form(
    client: str, k: OptionKey
) -> None:
    """Each invalid value raises ConfigError naming the variable, the value and what is accepted."""
    var = f"RESILIENCE_{client.upper()}_{k.env}"
    for raw in invalid_env(k):
        with pytest.raises(ConfigError) as info:
            run(config.CLIENTS[client], client, {var: raw})
        msg = str(info.value)
        shown = "***" if k.secret else repr(raw)  # a secret's value is never shown
        assert f"{var}={shown}" in msg and "expected " in msg, msg


@pytest.mark.parametrize(("client", "k"), ALL_KEYS, ids=IDS)
def test_every_key_as_argument_validates_python_values(client: str, k: OptionKey) -> None:
    """A valid argument wins with source 'argument'; an invalid one names the argument."""
    good = "value" if k.default is None else k.default  # None means "not given"
    resolved = run(config.CLIENTS[client], client, overrides={k.arg: good})
    assert value_at(resolved.options, k) == good and resolved.source(k.arg) == "argument"
    for bad in invalid_python(k):
        with pytest.raises(ConfigError, match=rf"{k.arg}=.*expected "):
            run(config.CLIENTS[client], client, overrides={k.arg: bad})


@pytest.mark.parametrize(("client", "k"), ALL_KEYS, ids=IDS)
def test_default_level_applies_to_shared_keys_and_rejects_client_only_keys(
    client: str, k: OptionKey
) -> None:
    """RESILIENCE_DEFAULT_<KEY> sets a shared key; for a client-only key it is an error."""
    raw, expected = valid_env(k)[-1]
    var = f"RESILIENCE_DEFAULT_{k.env}"
    if k.client_only:
        with pytest.raises(ConfigError, match=f"{var}: .*client-only"):
            run(config.CLIENTS[client], client, {var: raw})
    else:
        env = {var: raw, **room(client, k, "RESILIENCE_DEFAULT_")}
        resolved = run(config.CLIENTS[client], client, env)
        assert value_at(resolved.options, k) == expected and resolved.source(k.env) == var


@pytest.mark.parametrize("present", range(16))
def test_precedence_argument_instance_client_default_builtin(present: int) -> None:
    """The highest level present wins: argument > named > client > DEFAULT > built-in."""
    levels = [("argument", 11), (f"{M}SESSIONS_TIMEOUT_MS", 22),
              (f"{M}TIMEOUT_MS", 33), ("RESILIENCE_DEFAULT_TIMEOUT_MS", 44)]
    chosen = [lv for i, lv in enumerate(levels) if present & (1 << i)]
    env = {name: str(ms) for name, ms in chosen if name != "argument"}
    overrides = {"timeout": levels[0][1] / 1000} if present & 1 else {}
    resolved = run(env=env, name="sessions", overrides=overrides)
    want_source, want_ms = chosen[0] if chosen else ("default", 100)
    assert resolved.source("timeout") == want_source
    assert resolved.options.timeout == pytest.approx(want_ms / 1000)


def test_named_instance_is_case_insensitive_and_ignores_other_instances() -> None:
    """name='sessions' reads the SESSIONS variables; another instance's variables do not apply."""
    env = {f"{M}SESSIONS_POOL_SIZE": "3", f"{M}OTHER1_POOL_SIZE": "9"}
    assert run(env=env, name="Sessions").options.pool_size == 3
    assert run(env=env).options.pool_size == 16
    assert run(env=env, name="other1").options.pool_size == 9


@pytest.mark.parametrize("name", ["my-app", "a_b", "", "connect", "café"])
def test_bad_instance_name_is_an_error_naming_it(name: str) -> None:
    """Names are letters and digits, and never a key prefix that would be ambiguous (CONNECT)."""
    with pytest.raises(ConfigError, match=f"name={name!r}"):
        run(name=name)


@pytest.mark.parametrize(
    ("var", "suggestion"),
    [(f"{M}TIMOUT_MS", f"{M}TIMEOUT_MS"), (f"{M}SERVER", f"{M}SERVERS"),
     (f"{M}SESSIONS_TIMOUT_MS", f"{M}SESSIONS_TIMEOUT_MS"),
     (f"{M}BREAKER_FAILURE_RATIO", f"{M}BREAKER_FAILURE_RATE"),
     ("RESILIENCE_DEFAULT_TIMOUT_MS", "RESILIENCE_DEFAULT_TIMEOUT_MS")],
)
def test_misspelt_variable_is_an_error_with_did_you_mean(var: str, suggestion: str) -> None:
    """A variable under the client's or DEFAULT prefix that no key explains is a typo."""
    with pytest.raises(ConfigError, match=f"{var}: .*did you mean {suggestion}"):
        run(env={var: "5"})


def test_variables_of_other_clients_and_tools_are_ignored() -> None:
    """Only RESILIENCE_<CLIENT>_ and RESILIENCE_DEFAULT_ are checked for this client."""
    env = {"RESILIENCE_CASSANDRA_TIMOUT_MS": "5", "RESILIENCE_VENV": "/x", "MEMCACHE_X": "1"}
    assert run(env=env).options == MemcacheOptions()


def test_values_out_of_order_name_both_sources() -> None:
    """max_open_duration below open_duration names both, wherever each came from."""
    with pytest.raises(ConfigError, match=rf"BREAKER_MAX_OPEN_MS \(default 30000\) is less than "
                                          rf"{M}BREAKER_OPEN_MS='60000'"):
        run(env={f"{M}BREAKER_OPEN_MS": "60000"})
    with pytest.raises(ConfigError, match=r"retry_max_backoff=0.001 is less than retry_backoff"):
        run(overrides={"retry_backoff": 0.002, "retry_max_backoff": 0.001})
    ok = run(env={f"{M}BREAKER_OPEN_MS": "60000", f"{M}BREAKER_MAX_OPEN_MS": "60000"})
    assert ok.options.breaker.open_duration == ok.options.breaker.max_open_duration == 60.0


def test_group_argument_replaces_the_whole_group_over_the_environment() -> None:
    """breaker=BreakerOptions(...) sets every breaker key, even ones the environment sets."""
    env = {f"{M}BREAKER_JITTER": "0.5"}
    resolved = run(env=env, overrides={"breaker": BreakerOptions(failure_rate=0.3)})
    assert resolved.options.breaker == BreakerOptions(failure_rate=0.3)
    assert resolved.source("breaker_jitter") == "argument"


@pytest.mark.parametrize(
    ("overrides", "match"),
    [({"breaker": RetryOptions()}, "breaker=RetryOptions.*expected a BreakerOptions"),
     ({"breaker": BreakerOptions(), "breaker_jitter": 0.2}, "both given"),
     ({"breaker_jitter": 0.2, "breaker": BreakerOptions()}, "both given"),
     ({"timout": 1.0}, "unknown argument 'timout'; did you mean timeout"),
     ({"timeout": -1}, r"timeout=-1: expected seconds")],
)
def test_bad_arguments_are_errors_naming_the_argument(overrides: dict[str, Any],
                                                       match: str) -> None:
    """Wrong group type, a flat key and its group together, unknown names, bad values."""
    with pytest.raises(ConfigError, match=match):
        run(overrides=overrides)


def test_none_argument_counts_as_not_given_and_a_string_list_is_split() -> None:
    """Wrappers may pass timeout=None on; servers='a:1,b:2' is a list."""
    resolved = run(env={f"{M}TIMEOUT_MS": "7"}, overrides={"timeout": None, "servers": "a:1,b:2"})
    assert resolved.options.timeout == 0.007 and resolved.options.servers == ("a:1", "b:2")


def test_environment_is_read_at_call_time(monkeypatch: pytest.MonkeyPatch) -> None:
    """With environ=None, os.environ is read when resolve runs, not at import."""
    monkeypatch.setenv(f"{M}POOL_SIZE", "5")
    assert resolve(MemcacheOptions, client="memcache").options.pool_size == 5
    monkeypatch.setenv(f"{M}POOL_SIZE", "6")
    assert MemcacheOptions.from_env().pool_size == 6
    assert config.from_env(MemcacheOptions, client="memcache", environ={}).pool_size == 16


def test_direct_construction_is_validated() -> None:
    """BreakerOptions(...) and friends reject bad values and bad order themselves."""
    with pytest.raises(ConfigError, match=r"BreakerOptions\.open_duration=-1"):
        BreakerOptions(open_duration=-1)
    with pytest.raises(ConfigError, match=r"max_open_duration=30\.0 is less than"):
        BreakerOptions(open_duration=50.0)
    with pytest.raises(ConfigError, match="expected a RetryOptions"):
        MemcacheOptions(retry=BreakerOptions())  # type: ignore[arg-type]
    assert MemcacheOptions(servers=["a:1"]).servers == ("a:1",)  # type: ignore[arg-type]


@dataclass(frozen=True, slots=True)
class VaultOptions(ClientOptions):
    """A client with secrets, to check they are never shown."""

    token: str = config.option("none", "TOKEN", "str", "API token", secret=True, client_only=True)
    pin: int = config.option(1234, "PIN", "int", "PIN", min=0, secret=True, client_only=True)


def test_secret_values_never_appear() -> None:
    """Secrets are masked in errors, in the settings and in the options' repr."""
    with pytest.raises(ConfigError) as info:
        run(VaultOptions, "vault", {"RESILIENCE_VAULT_PIN": "12ab-hunter2"})
    assert "RESILIENCE_VAULT_PIN=***" in str(info.value) and "hunter2" not in str(info.value)
    with pytest.raises(ConfigError) as info:
        run(VaultOptions, "vault", overrides={"pin": "hunter2"})
    assert "pin=***" in str(info.value) and "hunter2" not in str(info.value)
    with pytest.raises(ConfigError) as info:
        run(VaultOptions, "vault", {"RESILIENCE_VAULT_TOKN": "hunter2"})
    assert "hunter2" not in str(info.value)
    resolved = run(VaultOptions, "vault", {"RESILIENCE_VAULT_TOKEN": "hunter2"})
    assert resolved.options.token == "hunter2"
    assert "hunter2" not in repr(resolved.options) + repr(resolved)
    assert [s.shown for s in resolved.settings if s.key.secret] == ["***", "***"]


def test_register_client_checks_name_and_client_only_marks() -> None:
    """Registration refuses a bad name, 'default', a taken name, and unmarked client fields."""
    for bad in ("Mem", "default", "a_b"):
        with pytest.raises(ValueError, match="client name"):
            config.register_client(bad)
    with pytest.raises(ValueError, match="already registered"):
        config.register_client("memcache")(VaultOptions)

    @dataclass(frozen=True, slots=True)
    class Sloppy(ClientOptions):
        hosts: str = config.option("h", "HOSTS", "str", "hosts")

    with pytest.raises(ValueError, match=r"Sloppy\.hosts: client_only must be True"):
        config.register_client("sloppy")(Sloppy)
    assert "sloppy" not in config.CLIENTS


@pytest.mark.parametrize(("client", "k"), ALL_KEYS, ids=IDS)
def test_printed_default_reads_back_as_the_default(client: str, k: OptionKey) -> None:
    """What `resilience config` and the docs print for a default is a valid setting of it."""
    if k.secret:  # a secret's value is never printed: *** when set, "unset" when not
        assert k.env_form(k.default) == ("unset" if k.default in (None, "") else "***")
        return
    var = f"RESILIENCE_{client.upper()}_{k.env}"
    if k.meta.get("optional") and k.default == "":  # printed empty: unset it
        assert value_at(run(config.CLIENTS[client], client, {}).options, k) == ""
        return
    if k.default is None:  # an optional key left unset: printed as such, not a value
        assert k.meta.get("optional") and k.env_form(None) == "unset"
        assert value_at(run(config.CLIENTS[client], client, {}).options, k) is None
        return
    resolved = run(config.CLIENTS[client], client, {var: k.env_form(k.default)})
    assert value_at(resolved.options, k) == k.default


@given(ms=st.integers(min_value=1, max_value=86_400_000))
def test_any_whole_millisecond_timeout_round_trips(ms: int) -> None:
    """A duration in ms becomes ms/1000 seconds and prints back as the same ms."""
    resolved = run(env={f"{M}TIMEOUT_MS": str(ms)})
    assert resolved.options.timeout == ms / 1000
    assert resolved.settings[0].shown == str(ms)


@given(ratio=st.floats(min_value=0.0, max_value=1.0, allow_nan=False))
def test_any_fraction_is_a_jitter_and_nothing_outside(ratio: float) -> None:
    """Every number in 0..1 is accepted as a ratio, exactly; beyond 1 is rejected."""
    assert run(env={f"{M}BREAKER_JITTER": repr(ratio)}).options.breaker.jitter == ratio
    with pytest.raises(ConfigError):
        run(env={f"{M}BREAKER_JITTER": repr(ratio + 1.0001)})
