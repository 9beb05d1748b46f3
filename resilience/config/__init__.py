"""Options for every policy and client, and their resolution from the environment.

Options are frozen, validated dataclasses. Durations are float seconds in Python and
whole milliseconds in the environment (``timeout`` <-> ``TIMEOUT_MS``). Every field
carries its environment key and its documentation in ``field(metadata=...)``: this module
is the one place the option table lives (docs/configuration.md is generated from it by
:func:`option_table_markdown` and a test keeps the two equal).

Environment variables (docs/architecture.md#env-config)::

    RESILIENCE_<CLIENT>_<KEY>            for example RESILIENCE_MEMCACHE_TIMEOUT_MS=50
    RESILIENCE_<CLIENT>_<NAME>_<KEY>     a named instance: RESILIENCE_MEMCACHE_SESSIONS_TIMEOUT_MS
    RESILIENCE_DEFAULT_<KEY>             keys shared by every client (not client-only keys)

Precedence: constructor argument > named instance > client > RESILIENCE_DEFAULT_ >
built-in default. The environment is read when :func:`resolve` runs (at wrapper
construction), never at import.

Nested options flatten with an underscore: ``BreakerOptions.failure_rate`` is the
constructor argument ``breaker_failure_rate`` and the key ``BREAKER_FAILURE_RATE``.

Field metadata understood by the resolver: ``env`` (the key), ``kind`` (below), ``doc``,
``min`` / ``max`` (bounds, in seconds for durations), ``min_exclusive`` (the bound itself
is not allowed), ``choices``, ``client_only`` (no RESILIENCE_DEFAULT_ form), ``secret``
(shown as ``***`` everywhere), ``validate`` (a per-item check of a list: raises
ValueError), ``item`` (what one list item looks like), ``at_least`` (the name of a
sibling field this one must not be below) and ``optional`` (a ``str`` that may be ``""``,
meaning "not set"; an empty environment value is still an error).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, TypeVar

from resilience.config._kinds import (
    OptionKey,
    bounds,
    num,
    option_keys,
    validate_instance,
)
from resilience.config._resolve import CLIENT_RE, Resolved, Setting, resolve_options

__all__ = [
    "CLIENTS",
    "BreakerOptions",
    "BulkheadOptions",
    "ClientOptions",
    "HedgeOptions",
    "OptionKey",
    "Resolved",
    "RetryOptions",
    "Setting",
    "check_host_port",
    "from_env",
    "group",
    "load_clients",
    "option",
    "option_keys",
    "option_table_markdown",
    "register_client",
    "resolve",
]

# Value kinds understood by the resolver:
#   "duration": env whole milliseconds (key ends in _MS), Python float seconds
#   "int", "float", "ratio" (float 0..1), "bool", "list" (comma separated), "str",
#   "choice" (metadata "choices")


def option(default: Any, env: str, kind: str, doc: str, **meta: Any) -> Any:
    """A dataclass field that is an option: its environment key, kind, doc and checks.

    A secret (``secret=True``) stays out of the dataclass repr too.
    """
    return field(
        default=default,
        repr=not meta.get("secret", False),
        metadata={"env": env, "kind": kind, "doc": doc, **meta},
    )


def group(factory: Any, env: str, doc: str) -> Any:
    """A dataclass field holding a nested group of options (``breaker``, ``retry``...)."""
    # Any-typed like option(); the groups are frozen, so a shared default would be safe.
    return field(default_factory=factory, metadata={"env": env, "kind": "nested", "doc": doc})


def check_host_port(item: str) -> None:
    """Check one ``host:port`` list item; raises ValueError saying what is expected."""
    host, sep, port = item.rpartition(":")
    ok_host = bool(host) and not any(c.isspace() or c in "/@" for c in host)
    if host.startswith("[") != host.endswith("]"):
        ok_host = False
    if not (sep and ok_host and port.isdigit() and 1 <= int(port) <= 65535):
        raise ValueError("host:port with a port from 1 to 65535")


@dataclass(frozen=True, slots=True)
class BreakerOptions:
    """Circuit breaker per endpoint (docs/architecture.md#per-endpoint-breakers)."""

    enabled: bool = option(True, "ENABLED", "bool", "turn the breaker off entirely")
    window: Literal["count", "time"] = option(
        "count", "WINDOW", "choice", "sliding window kind", choices=("count", "time")
    )
    window_size: int = option(
        20, "WINDOW_SIZE", "int", "calls in a count window", min=1, max=100_000
    )
    window_duration: float = option(
        10.0, "WINDOW_MS", "duration", "length of a time window", min=0.001
    )
    failure_rate: float = option(
        0.5, "FAILURE_RATE", "ratio", "failure share that opens the breaker (0..1]",
        min_exclusive=True,
    )
    slow_call_rate: float = option(
        1.0, "SLOW_CALL_RATE", "ratio", "slow-call share that opens the breaker (0..1]",
        min_exclusive=True,
    )
    slow_call_duration: float = option(
        1.0, "SLOW_CALL_MS", "duration", "a call at least this long counts as slow", min=0.001
    )
    minimum_calls: int = option(
        10, "MIN_CALLS", "int", "calls in the window before rates are judged", min=1
    )
    half_open_probes: int = option(
        1, "HALF_OPEN_PROBES", "int", "concurrent trial calls while half-open", min=1
    )
    open_duration: float = option(
        1.0, "OPEN_MS", "duration", "first open interval before a probe", min=0.001
    )
    max_open_duration: float = option(
        30.0, "MAX_OPEN_MS", "duration", "cap of the growing open interval", min=0.001,
        at_least="open_duration",
    )
    open_backoff: float = option(
        2.0, "OPEN_BACKOFF", "float", "open interval multiplier per failed probe", min=1.0
    )
    jitter: float = option(0.1, "JITTER", "ratio", "random share added to the open interval")
    health_probe: bool = option(
        True, "HEALTH_PROBE", "bool",
        "while open, check the endpoint in the background (clients that can) and go"
        " half-open as soon as it answers",
    )
    health_probe_interval: float = option(
        0.25, "HEALTH_PROBE_INTERVAL_MS", "duration",
        "pause between background health probes of an open endpoint (jittered)", min=0.01,
    )
    health_probe_timeout: float = option(
        0.25, "HEALTH_PROBE_TIMEOUT_MS", "duration", "time limit of one health probe",
        min=0.001,
    )

    def __post_init__(self) -> None:
        validate_instance(self)


@dataclass(frozen=True, slots=True)
class RetryOptions:
    """Retries of idempotent operations on transient errors (docs/architecture.md#safe-retries)."""

    attempts: int = option(2, "ATTEMPTS", "int", "total attempts; 1 turns retry off", min=1)
    backoff: float = option(
        0.01, "BACKOFF_MS", "duration", "base of the full-jitter exponential backoff", min=0.0
    )
    max_backoff: float = option(
        0.2, "MAX_BACKOFF_MS", "duration", "cap of one backoff sleep", min=0.0,
        at_least="backoff",
    )
    budget_ratio: float = option(
        0.2, "BUDGET_RATIO", "ratio", "retries allowed as a share of recent calls"
    )
    budget_min_per_second: float = option(
        5.0, "BUDGET_MIN_PER_S", "float", "retries always allowed per second", min=0.0
    )
    budget_window: float = option(
        10.0, "BUDGET_WINDOW_MS", "duration", "how far back 'recent calls' reaches", min=0.001
    )

    def __post_init__(self) -> None:
        validate_instance(self)


@dataclass(frozen=True, slots=True)
class HedgeOptions:
    """Hedged reads, opt-in, for the clients that offer them (docs/hedging.md)."""

    enabled: bool = option(
        False, "ENABLED", "bool", "send a second attempt of a slow idempotent read; the "
        "first answer wins", client_only=True,
    )
    delay: float = option(
        0.0, "DELAY_MS", "duration", "hedge after this long; 0: after the recent p95 "
        "(quantile) of calls", min=0.0, client_only=True,
    )
    quantile: float = option(
        0.95, "QUANTILE", "ratio", "which quantile of recent call durations is the delay",
        min_exclusive=True, client_only=True,
    )
    min_delay: float = option(
        0.001, "MIN_DELAY_MS", "duration", "floor of the quantile delay", min=0.0,
        client_only=True,
    )
    samples: int = option(
        1000, "SAMPLES", "int", "recent call durations the quantile is taken over",
        min=20, max=100_000, client_only=True,
    )
    budget_ratio: float = option(
        0.05, "BUDGET_RATIO", "ratio", "hedges allowed as a share of recent calls",
        client_only=True,
    )
    budget_min_per_second: float = option(
        1.0, "BUDGET_MIN_PER_S", "float", "hedges always allowed per second", min=0.0,
        client_only=True,
    )
    budget_window: float = option(
        10.0, "BUDGET_WINDOW_MS", "duration", "how far back 'recent calls' reaches",
        min=0.001, client_only=True,
    )

    def __post_init__(self) -> None:
        validate_instance(self)


@dataclass(frozen=True, slots=True)
class BulkheadOptions:
    """Concurrency limit per dependency."""

    max_concurrent: int = option(
        0, "MAX_CONCURRENT", "int", "calls in flight at once; 0 means no limit", min=0
    )
    max_wait: float = option(
        0.0, "MAX_WAIT_MS", "duration", "wait for a permit at most this long; 0 rejects at once",
        min=0.0,
    )

    def __post_init__(self) -> None:
        validate_instance(self)


@dataclass(frozen=True, slots=True)
class ClientOptions:
    """What every client wrapper shares. Client option classes subclass this."""

    timeout: float = option(
        1.0, "TIMEOUT_MS", "duration", "default time budget of one call", min=0.001
    )
    connect_timeout: float = option(
        1.0, "CONNECT_TIMEOUT_MS", "duration", "cap of one connection attempt", min=0.001
    )
    breaker: BreakerOptions = group(BreakerOptions, "BREAKER", "circuit breaker")  # noqa: RUF009
    retry: RetryOptions = group(RetryOptions, "RETRY", "retry")  # noqa: RUF009
    bulkhead: BulkheadOptions = group(BulkheadOptions, "BULKHEAD", "bulkhead")  # noqa: RUF009

    def __post_init__(self) -> None:
        validate_instance(self)

    @classmethod
    def from_env(
        cls: type[_O],
        *,
        name: str | None = None,
        environ: Mapping[str, str] | None = None,
        **overrides: Any,
    ) -> _O:
        """The options of this registered client: see :func:`resolve` (same arguments).

        Raises:
            ConfigError: a bad variable or argument, named in the message.
            TypeError: the class is not registered with :func:`register_client`.
        """
        client = _CLIENT_OF.get(cls)
        if client is None:
            raise TypeError(f"{cls.__name__} is not registered with register_client()")
        return resolve(cls, client=client, name=name, environ=environ, overrides=overrides).options


_O = TypeVar("_O", bound=ClientOptions)


# ---------------------------------------------------------------------------------------
# Clients: a registry other modules extend. A client's options class registers itself
# with @register_client("name") where it is defined; resolve() does not need the registry
# (it takes the class), only `resilience config` and the docs table do.

CLIENTS: dict[str, type[ClientOptions]] = {}
_CLIENT_OF: dict[type, str] = {}
_C = TypeVar("_C", bound=type[ClientOptions])


def register_client(name: str) -> Callable[[_C], _C]:
    """Class decorator: register ``options_cls`` as the options of client ``name``.

    Fields a client adds beyond ClientOptions must be ``client_only`` (RESILIENCE_DEFAULT_
    holds only the shared keys), and the name is lower-case letters and digits.

    Raises:
        ValueError: a bad or taken name, or a client field not marked client_only.
    """
    if not CLIENT_RE.match(name) or name == "default":
        raise ValueError(f"client name {name!r}: expected [a-z][a-z0-9]*, not 'default'")

    def decorate(options_cls: _C) -> _C:
        if CLIENTS.get(name, options_cls) is not options_cls:
            raise ValueError(f"client {name!r} is already registered ({CLIENTS[name]})")
        shared = {k.env for k in option_keys(ClientOptions)}
        for k in option_keys(options_cls):
            if (k.env in shared) == k.client_only:
                raise ValueError(f"{options_cls.__name__}.{k.arg}: client_only must be "
                                 f"{k.env not in shared} (shared keys are ClientOptions')")
        CLIENTS[name] = options_cls
        _CLIENT_OF[options_cls] = name
        return options_cls

    return decorate


def load_clients() -> list[str]:
    """Import every module of ``resilience.clients`` so that all clients are registered.

    A module whose driver is not installed (an extra left out) is skipped: that client
    cannot be used anyway. Other failures are returned (one line per module) instead of
    raised, so ``resilience config`` still shows the clients that did load.
    """
    import importlib
    import pkgutil  # both imported here: only the CLI and the docs table need them

    import resilience.clients as package

    problems = []
    for info in pkgutil.iter_modules(package.__path__, package.__name__ + "."):
        if info.name.rpartition(".")[2].startswith("_"):
            continue
        try:
            importlib.import_module(info.name)
        except ImportError as exc:
            if (exc.name or "resilience").partition(".")[0] == "resilience":
                problems.append(f"{info.name}: {type(exc).__name__}: {exc}")
        except Exception as exc:  # a broken sibling must not hide the others
            problems.append(f"{info.name}: {type(exc).__name__}: {exc}")
    return problems


# ---------------------------------------------------------------------------------------
# Resolution (the engine is resilience.config._resolve; the value kinds config._kinds).


def resolve(
    options_cls: type[_O],
    *,
    client: str,
    name: str | None = None,
    environ: Mapping[str, str] | None = None,
    overrides: Mapping[str, object] | None = None,
) -> Resolved[_O]:
    """Resolve ``options_cls`` for ``client`` from arguments, the environment and defaults.

    Precedence per key: constructor argument > RESILIENCE_<CLIENT>_<NAME>_<KEY> >
    RESILIENCE_<CLIENT>_<KEY> > RESILIENCE_DEFAULT_<KEY> (shared keys only) > default.

    Args:
        options_cls: a ClientOptions subclass.
        client: the client name, lower case (``"memcache"``): the variables read are
            RESILIENCE_<CLIENT>_*.
        name: a named instance (letters and digits, any case): RESILIENCE_<CLIENT>_<NAME>_*.
        environ: the environment; ``os.environ`` (read now) when None.
        overrides: constructor arguments, Python values (durations in seconds) under the
            flat lower-case names (``timeout``, ``breaker_failure_rate``), or a whole
            group (``breaker=BreakerOptions(...)``, replacing that group); a None value
            counts as not given, so a wrapper can pass its keyword arguments on.

    Returns:
        The frozen options and, per key, the value's source: ``"argument"``, the
        variable that set it, or ``"default"``.

    Raises:
        ConfigError: a bad value (naming the variable or argument, the value unless it is
            secret, and what is accepted); two values out of order (both named); an
            unknown argument, or a RESILIENCE_<CLIENT>_ / RESILIENCE_DEFAULT_ variable no
            key explains (both with a did-you-mean); a client-only key under
            RESILIENCE_DEFAULT_; a bad instance name.
    """
    env = os.environ if environ is None else environ
    shared = frozenset(k.env for k in option_keys(ClientOptions))
    return resolve_options(options_cls, client, name, env, overrides or {}, shared)


def from_env(
    options_cls: type[_O],
    *,
    client: str,
    name: str | None = None,
    environ: Mapping[str, str] | None = None,
    **overrides: Any,
) -> _O:
    """``resolve(...).options``: the options alone, overrides as keyword arguments."""
    return resolve(
        options_cls, client=client, name=name, environ=environ, overrides=overrides
    ).options

# ---------------------------------------------------------------------------------------
# The option table of docs/configuration.md.


def _type_text(k: OptionKey) -> str:
    text = {"duration": "ms", "int": "integer", "float": "number", "ratio": "fraction",
            "bool": "bool", "str": "string"}.get(k.kind, "")
    if k.kind == "choice":
        return "one of " + ", ".join(k.meta["choices"])
    if k.kind == "list":
        return "list of " + str(k.meta.get("item", "strings"))
    lo, hi = bounds(k, 1000.0 if k.kind == "duration" else 1.0)
    if lo is not None:
        text += f" {'>' if k.meta.get('min_exclusive') else '>='} {num(lo)}"
    if hi is not None and k.kind != "duration":
        text += f", <= {num(hi)}"
    return text


def option_table_markdown() -> str:
    """The Markdown table of every option of every client: variable, type, default, meaning.

    Shared keys are written ``RESILIENCE_<CLIENT>_<KEY>`` with each client's own default
    where it differs; client-only keys with their client's name. Loads all clients first,
    so the table does not depend on what happens to be imported.
    """
    load_clients()
    rows = ["| Variable | Type | Default | Meaning |", "|---|---|---|---|"]
    for k in option_keys(ClientOptions):
        default = k.env_form(k.default)
        for client in sorted(CLIENTS):
            theirs = next(c for c in option_keys(CLIENTS[client]) if c.env == k.env)
            if theirs.env_form(theirs.default) != k.env_form(k.default):
                default += f"; {client}: {theirs.env_form(theirs.default)}"
        rows.append(f"| `RESILIENCE_<CLIENT>_{k.env}` | {_type_text(k)} | {default} | {k.doc} |")
    for client in sorted(CLIENTS):
        for k in option_keys(CLIENTS[client]):
            if k.client_only:
                rows.append(f"| `RESILIENCE_{client.upper()}_{k.env}` | {_type_text(k)} | "
                            f"{k.env_form(k.default)} | {k.doc} |")
    return "\n".join(rows) + "\n"
