"""Option keys and value kinds: the parsing and checking half of resilience.config.

An :class:`OptionKey` is one leaf option of an options dataclass, flattened
(``BreakerOptions.failure_rate`` inside ``MemcacheOptions`` is the key
``BREAKER_FAILURE_RATE`` and the argument ``breaker_failure_rate``). For each kind this
module says what is accepted, parses an environment value and checks a Python value;
every error is a ConfigError naming the variable or argument, the value (``***`` for a
secret) and what is accepted. Nothing here reads the environment.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import fields
from typing import Any, NamedTuple

from resilience.errors import ConfigError

_MAX_DURATION = 86_400.0  # one day: a sanity cap that also catches a unit mix-up
_TRUE = frozenset({"1", "true", "yes", "on"})
_FALSE = frozenset({"0", "false", "no", "off"})


class OptionKey(NamedTuple):  # a NamedTuple: a dataclass costs ~1.5 ms of import time
    """One leaf option: ``path`` ("breaker", "failure_rate"), ``env`` BREAKER_FAILURE_RATE,
    ``arg`` breaker_failure_rate (the constructor argument), its kind, doc, field
    metadata and built-in default (Python form)."""

    path: tuple[str, ...]
    env: str
    arg: str
    kind: str
    doc: str
    meta: Mapping[str, Any]
    default: Any

    def __repr__(self) -> str:  # short, and never shows a secret default
        return f"OptionKey({self.arg}: {self.env}, {self.kind})"

    @property
    def client_only(self) -> bool:
        return bool(self.meta.get("client_only", False))

    @property
    def secret(self) -> bool:
        return bool(self.meta.get("secret", False))

    def env_form(self, value: Any) -> str:
        """``value`` written as an environment value (durations in ms); secrets masked."""
        if value is None or (self.secret and value == ""):
            return "unset"  # an optional value left out; "***" would suggest a secret set
        if self.secret:
            return "***"
        if self.kind == "duration":
            return num(value * 1000.0)
        if self.kind == "bool":
            return "true" if value else "false"
        if self.kind == "list":
            return ",".join(value)
        if self.kind in ("float", "ratio"):
            return num(value)
        return str(value)


def num(x: float) -> str:
    """``x`` as a short decimal: whole numbers without a fraction (the tolerance is
    relative, since seconds * 1000 is off by more than 1e-9 at a day's milliseconds)."""
    whole = round(x)
    return str(whole) if abs(x - whole) <= 1e-9 * max(1.0, abs(x)) else f"{x:.6g}"


def _leaf(f: Any, prefix: tuple[str, ...], env_prefix: str, default: Any) -> OptionKey:
    path = (*prefix, f.name)
    return OptionKey(
        path, env_prefix + f.metadata["env"], "_".join(path), f.metadata["kind"],
        f.metadata["doc"], f.metadata, default,
    )


_LOCAL: dict[type, tuple[OptionKey, ...]] = {}
_FLAT: dict[type, tuple[OptionKey, ...]] = {}


def _local_keys(cls: type) -> tuple[OptionKey, ...]:
    # Leaf fields of one class, not flattened; used by __post_init__ (no instance needed).
    if cls not in _LOCAL:
        _LOCAL[cls] = tuple(
            _leaf(f, (), "", f.default) for f in fields(cls) if f.metadata["kind"] != "nested"
        )
    return _LOCAL[cls]


def _flatten(inst: Any, prefix: tuple[str, ...], env_prefix: str) -> Iterable[OptionKey]:
    for f in fields(inst):
        value = getattr(inst, f.name)
        if f.metadata["kind"] == "nested":
            yield from _flatten(value, (*prefix, f.name), env_prefix + f.metadata["env"] + "_")
        else:
            yield _leaf(f, prefix, env_prefix, value)


def option_keys(options_cls: type) -> tuple[OptionKey, ...]:
    """Every leaf option of ``options_cls`` flattened, in field order, with the class's
    own defaults (``MemcacheOptions`` has a 100 ms timeout, ``ClientOptions`` 1 s)."""
    if options_cls not in _FLAT:
        _FLAT[options_cls] = tuple(_flatten(options_cls(), (), ""))
    return _FLAT[options_cls]


# ---------------------------------------------------------------------------------------
# Kinds: what is accepted, parsing an environment value, checking a Python value.


def bounds(k: OptionKey, scale: float = 1.0) -> tuple[float | None, float | None]:
    lo, hi = k.meta.get("min"), k.meta.get("max")
    if k.kind == "ratio":
        lo, hi = (0.0 if lo is None else lo), (1.0 if hi is None else hi)
    if k.kind == "duration":
        lo, hi = (0.0 if lo is None else lo), (_MAX_DURATION if hi is None else hi)
    return (None if lo is None else lo * scale), (None if hi is None else hi * scale)


def _in_range(k: OptionKey, x: float) -> bool:
    lo, hi = bounds(k)
    if lo is not None and (x < lo or (x == lo and k.meta.get("min_exclusive", False))):
        return False
    return hi is None or x <= hi


def accepted(k: OptionKey, env: bool) -> str:
    """What a value of ``k`` must look like, for an error message."""
    lo, hi = bounds(k, 1000.0 if env and k.kind == "duration" else 1.0)
    low = "" if lo is None else f" {'>' if k.meta.get('min_exclusive') else '>='} {num(lo)}"
    rng = low + ("" if hi is None else f"{' and' if low else ''} <= {num(hi)}")
    if k.kind == "duration":
        return f"a whole number of milliseconds{rng}" if env else f"seconds (a number){rng}"
    if k.kind == "int":
        return f"a whole number{rng}"
    if k.kind == "float":
        return f"a number{rng}"
    if k.kind == "ratio":
        return f"a fraction{rng}, such as 0.25 (not a percentage)"
    if k.kind == "bool":
        return "one of 1/0, true/false, yes/no, on/off (any case)" if env else "True or False"
    if k.kind == "choice":
        return "one of " + ", ".join(repr(c) for c in k.meta["choices"])
    if k.kind == "list":
        item = k.meta.get("item", "a non-empty string")
        form = "comma-separated list" if env else "list (or comma-separated string)"
        return f"a {form} of at least one {item}"
    return "a non-empty string"


def shown(k: OptionKey, value: object) -> str:
    return "***" if k.secret else repr(value)


def _error(label: str, k: OptionKey, value: object, env: bool, service: str | None,
           why: str = "") -> ConfigError:
    return ConfigError(
        f"{label}={shown(k, value)}: {why}expected {accepted(k, env)}", service=service
    )


def _list_items(k: OptionKey, items: Iterable[str]) -> tuple[str, ...] | str:
    """The non-blank items, checked; or the reason they are not acceptable."""
    out = tuple(i.strip() for i in items if i.strip())
    if not out:
        return "no items; "
    check: Callable[[str], None] | None = k.meta.get("validate")
    for item in out:
        if check is not None:
            try:
                check(item)
            except ValueError:
                return f"item {'***' if k.secret else repr(item)} is not valid; "
    return out


def parse_env(k: OptionKey, var: str, raw: str, service: str | None) -> Any:
    """The Python value of environment variable ``var`` for key ``k``.

    An empty (or blank) value is an error, not "unset": silently ignoring it would hide
    a typo such as ``RESILIENCE_MEMCACHE_TIMEOUT_MS=$UNSET_VAR``.
    """
    text, value = raw.strip(), None
    if not text:
        raise _error(var, k, raw, True, service, "empty value (unset it to fall back); ")
    kind = k.kind
    if kind == "duration" and text.isdigit() and text.isascii():
        value = int(text) / 1000.0
    elif kind == "int" and re.fullmatch(r"[+-]?[0-9]+", text):
        value = int(text)
    elif kind in ("float", "ratio"):
        try:
            value = float(text)
        except ValueError:
            value = None
        value = value if value is not None and math.isfinite(value) else None
    elif kind == "bool" and text.lower() in _TRUE | _FALSE:
        return text.lower() in _TRUE
    elif kind == "choice" and text.lower() in k.meta["choices"]:
        return text.lower()
    elif kind == "str":
        return text
    elif kind == "list":
        items = _list_items(k, text.split(","))
        if isinstance(items, str):
            raise _error(var, k, raw, True, service, items)
        return items
    if value is None or not _in_range(k, value):
        raise _error(var, k, raw, True, service)
    return value


def check_python(k: OptionKey, value: Any, label: str, service: str | None) -> Any:
    """``value`` checked (and normalised: list -> tuple, int -> float) for key ``k``.

    ``None`` is accepted for a key marked ``optional`` (a setting that may be absent,
    such as a password); the environment cannot set it back to None.
    """
    if value is None and k.meta.get("optional", False):
        return None
    kind, ok = k.kind, False
    if kind == "bool":
        ok = type(value) is bool
    elif kind == "int":
        ok = isinstance(value, int) and not isinstance(value, bool) and _in_range(k, value)
    elif kind in ("float", "ratio", "duration"):
        ok = (isinstance(value, (int, float)) and not isinstance(value, bool)
              and math.isfinite(value) and _in_range(k, value))
        value = float(value) if ok else value
    elif kind == "choice":
        ok = isinstance(value, str) and value in k.meta["choices"]
    elif kind == "str":
        # An option marked optional=True may also be "" (a chroot's "not set"; None is
        # taken above); the environment still rejects an empty value (parse_env), so a
        # typo cannot clear it.
        ok = isinstance(value, str) and (bool(value.strip()) or (
            value == "" and bool(k.meta.get("optional"))))
    elif kind == "list":
        seq = value.split(",") if isinstance(value, str) else value
        if isinstance(seq, (list, tuple)) and all(isinstance(i, str) for i in seq):
            items = _list_items(k, seq)
            if isinstance(items, str):
                raise _error(label, k, value, False, service, items)
            return items
    if not ok:
        raise _error(label, k, value, False, service)
    return value


def check_order(k: OptionKey, value: Any, lesser: OptionKey, lesser_value: Any,
                 labels: tuple[str, str], service: str | None) -> None:
    """A field with metadata ``at_least`` must not be below that sibling field."""
    if value < lesser_value:
        raise ConfigError(
            f"{labels[0]} is less than {labels[1]}: expected {k.env} >= {lesser.env}",
            service=service,
        )


def validate_instance(obj: Any) -> None:
    # Direct construction (BreakerOptions(open_duration=-1)) is validated too; the
    # resolver has checked the same values already, with better names.
    cls = type(obj)
    keys = {k.arg: k for k in _local_keys(cls)}
    for k in keys.values():
        value = getattr(obj, k.arg)
        checked = check_python(k, value, f"{cls.__name__}.{k.arg}", None)
        if checked is not value:
            object.__setattr__(obj, k.arg, checked)
    for f in fields(obj):
        if f.metadata["kind"] == "nested" and callable(f.default_factory):
            want = type(f.default_factory())
            if not isinstance(getattr(obj, f.name), want):
                raise ConfigError(f"{cls.__name__}.{f.name}: expected a {want.__name__}")
    for k in keys.values():
        if "at_least" in k.meta:
            low = keys[k.meta["at_least"]]
            labels = (f"{cls.__name__}.{k.arg}={getattr(obj, k.arg)!r}",
                      f"{cls.__name__}.{low.arg}={getattr(obj, low.arg)!r}")
            check_order(k, getattr(obj, k.arg), low, getattr(obj, low.arg), labels, None)
