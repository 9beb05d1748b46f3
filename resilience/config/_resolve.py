"""Resolution of an options class from arguments, the environment and defaults.

The engine behind :func:`resilience.config.resolve` (read that docstring for the
rules). For each leaf key the first of these that is present wins: the constructor
argument, RESILIENCE_<CLIENT>_<NAME>_<KEY>, RESILIENCE_<CLIENT>_<KEY>,
RESILIENCE_DEFAULT_<KEY> (shared keys only), the class's default. Before that, every
RESILIENCE_<CLIENT>_* and RESILIENCE_DEFAULT_* variable must be explained by a key, so a
typo is an error with a did-you-mean instead of a setting silently not applied.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import fields
from typing import Any, Generic, NamedTuple, TypeVar

from resilience.config._kinds import (
    OptionKey,
    check_order,
    check_python,
    option_keys,
    parse_env,
    shown,
)
from resilience.errors import ConfigError

NAME_RE = re.compile(r"[A-Z0-9]+\Z")
CLIENT_RE = re.compile(r"[a-z][a-z0-9]*\Z")
_O = TypeVar("_O")

class Setting(NamedTuple):
    """The effective value of one key and where it came from.

    ``source`` is ``"argument"``, the environment variable that set it, or ``"default"``;
    ``env_var`` is the variable that sets it for this client (or named instance).
    """

    key: OptionKey
    value: Any
    source: str
    env_var: str

    def __repr__(self) -> str:  # the value as shown: never a secret
        return f"Setting({self.key.env}={self.shown}, source={self.source})"

    @property
    def shown(self) -> str:
        """The value as it would be written in the environment; ``***`` for a secret."""
        return self.key.env_form(self.value)


class Resolved(NamedTuple, Generic[_O]):
    """The result of :func:`resolve`: the options and where each value came from."""

    options: _O
    client: str
    name: str | None
    settings: tuple[Setting, ...]

    @property
    def sources(self) -> dict[str, str]:
        """Flat argument name (``breaker_failure_rate``) -> source."""
        return {s.key.arg: s.source for s in self.settings}

    def source(self, key: str) -> str:
        """Where ``key`` (argument name ``timeout`` or env key ``TIMEOUT_MS``) came from."""
        for s in self.settings:
            if key in (s.key.arg, s.key.env):
                return s.source
        raise KeyError(key)


def _did_you_mean(word: str, candidates: Iterable[str], prefix: str = "") -> str:
    import difflib  # only on the error path; keeps `import resilience` light

    close = difflib.get_close_matches(word, list(candidates), n=3, cutoff=0.6)
    return f"; did you mean {' or '.join(prefix + c for c in close)}?" if close else ""


def _typo_hint(rest: str, envs: set[str], prefix: str) -> str:
    # Compare the key part only: as a client key (TIMOUT_MS) and, if the first word
    # could be an instance name, as that instance's key (SESSIONS_TIMOUT_MS).
    import difflib
    scored = [(difflib.SequenceMatcher(None, rest, e).ratio(), e) for e in envs]
    head, _, tail = rest.partition("_")
    if tail and NAME_RE.match(head):
        scored += [(difflib.SequenceMatcher(None, tail, e).ratio(), f"{head}_{e}") for e in envs]
    close = [c for r, c in sorted(scored, key=lambda rc: (-rc[0], rc[1])) if r >= 0.75][:3]
    return f"; did you mean {' or '.join(prefix + c for c in close)}?" if close else ""


def _instance_name(name: str | None, keys: tuple[OptionKey, ...], client: str) -> str | None:
    if name is None:
        return None
    upper = name.upper() if isinstance(name, str) else ""
    envs = {k.env for k in keys}
    # A name N such that N_<KEY> is itself a key (CONNECT: CONNECT_TIMEOUT_MS) is ambiguous.
    clash = [e for e in envs if e.startswith(upper + "_") and e[len(upper) + 1:] in envs]
    if not NAME_RE.match(upper) or clash:
        why = f"clashes with the key {clash[0]}" if clash else "expected letters and digits only"
        raise ConfigError(f"name={name!r}: {why}", service=client)
    return upper


def _check_environment(env: Mapping[str, str], client: str, keys: tuple[OptionKey, ...],
                       shared: frozenset[str]) -> None:
    """Reject variables of this client or of DEFAULT that no key explains (typos)."""
    envs = {k.env for k in keys}
    own, dflt = f"RESILIENCE_{client.upper()}_", "RESILIENCE_DEFAULT_"
    for var in sorted(env):
        if var.startswith(own):
            rest = var[len(own):]
            head, _, tail = rest.partition("_")
            if rest in envs or (tail in envs and NAME_RE.match(head)):
                continue
            raise ConfigError(
                f"{var}: not a setting of {client}{_typo_hint(rest, envs, own)} "
                f"(`resilience config {client}` lists them)", service=client)
        if var.startswith(dflt):
            rest = var[len(dflt):]
            if rest in envs - shared:
                raise ConfigError(
                    f"{var}: {rest} is client-only and has no RESILIENCE_DEFAULT_ form; "
                    f"set {own}{rest}", service=client)
            if rest not in shared:
                raise ConfigError(
                    f"{var}: not a shared setting"
                    f"{_did_you_mean(rest, shared, dflt)}", service=client)


def _given(keys: tuple[OptionKey, ...], overrides: Mapping[str, object],
           client: str, defaults: Any) -> dict[str, tuple[Any, str]]:
    """Flat argument name -> (Python value, label for messages) from the overrides."""
    by_arg = {k.arg: k for k in keys}
    out: dict[str, tuple[Any, str]] = {}
    for arg, value in overrides.items():
        if value is None:  # None means "not given", so wrappers can pass their kwargs on
            continue
        group = [k for k in keys if len(k.path) > 1 and k.path[0] == arg]
        if arg in by_arg:
            if arg in out:  # already set from its group, given earlier
                raise ConfigError(f"{arg}= and {by_arg[arg].path[0]}= both given: give one",
                                  service=client)
            out[arg] = (value, arg)
        elif group:
            want = type(getattr(defaults, arg))
            if not isinstance(value, want):
                raise ConfigError(f"{arg}={value!r}: expected a {want.__name__}", service=client)
            for k in group:
                if k.arg in out:
                    raise ConfigError(f"{k.arg}= and {arg}= both given: give one", service=client)
                leaf: Any = value
                for part in k.path[1:]:
                    leaf = getattr(leaf, part)
                out[k.arg] = (leaf, ".".join(k.path))
        else:
            raise ConfigError(f"unknown argument {arg!r}{_did_you_mean(arg, by_arg)}",
                              service=client)
    return out


def _build(default: Any, values: Mapping[tuple[str, ...], Any], prefix: tuple[str, ...]) -> Any:
    # A fresh instance of default's class holding the resolved values, nested groups too.
    kwargs = {}
    for f in fields(default):
        path = (*prefix, f.name)
        if f.metadata["kind"] == "nested":
            kwargs[f.name] = _build(getattr(default, f.name), values, path)
        else:
            kwargs[f.name] = values[path]
    return type(default)(**kwargs)


def resolve_options(
    options_cls: type[_O],
    client: str,
    name: str | None,
    env: Mapping[str, str],
    overrides: Mapping[str, object],
    shared: frozenset[str],
) -> Resolved[_O]:
    """See resilience.config.resolve; ``shared`` are the keys RESILIENCE_DEFAULT_ may set."""
    if not CLIENT_RE.match(client) or client == "default":
        raise ConfigError(f"client={client!r}: expected [a-z][a-z0-9]*, not 'default'")
    keys = option_keys(options_cls)
    inst = _instance_name(name, keys, client)
    _check_environment(env, client, keys, shared)
    defaults = options_cls()
    given = _given(keys, overrides, client, defaults)
    values: dict[tuple[str, ...], Any] = {}
    settings: dict[str, Setting] = {}
    labels: dict[str, str] = {}
    prefix = f"RESILIENCE_{client.upper()}_"
    for k in keys:
        own = f"{prefix}{inst}_{k.env}" if inst else prefix + k.env
        chain = [f"{prefix}{inst}_{k.env}"] if inst else []
        chain.append(prefix + k.env)
        if not k.client_only:
            chain.append("RESILIENCE_DEFAULT_" + k.env)
        if k.arg in given:
            raw, label = given[k.arg]
            value, source = check_python(k, raw, label, client), "argument"
            labels[k.arg] = f"{label}={shown(k, raw)}"
        else:
            var = next((v for v in chain if v in env), None)
            if var is None:
                value, source = k.default, "default"
                labels[k.arg] = f"{k.env} (default {k.env_form(k.default)})"
            else:
                value, source = parse_env(k, var, env[var], client), var
                labels[k.arg] = f"{var}={shown(k, env[var])}"
        values[k.path] = value
        settings[k.arg] = Setting(k, value, source, own)
    for k in keys:
        if "at_least" in k.meta:
            low = settings["_".join((*k.path[:-1], k.meta["at_least"]))]
            check_order(k, values[k.path], low.key, low.value,
                         (labels[k.arg], labels[low.key.arg]), client)
    options: _O = _build(defaults, values, ())
    return Resolved(options, client, inst, tuple(settings.values()))
