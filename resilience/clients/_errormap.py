"""Driver exception -> resilience error tables, and idempotency tables."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from types import MappingProxyType

from resilience.errors import ResilienceError

__all__ = ["ErrorMap", "ErrorRule", "IdempotencyTable", "idempotency_table"]


ErrorRule = tuple[
    type[BaseException] | tuple[type[BaseException], ...], type[ResilienceError] | None, str
]


class ErrorMap:
    """A table from driver exceptions to resilience errors, most specific rule first.

    Each rule is ``(driver exception type or tuple, resilience error class, detail)``.
    A rule whose class is ``None`` marks an exception the wrapper lets through unmapped.
    The first rule whose type matches (``isinstance``) wins; lookups are cached per
    exception type.

    Args:
        rules: the table, most specific first.

    Raises:
        ValueError: a rule can never match because an earlier rule catches all of its
            types (the table is in the wrong order).
    """

    __slots__ = ("_cache", "_rules")

    def __init__(self, rules: Iterable[ErrorRule]) -> None:
        self._rules: tuple[ErrorRule, ...] = tuple(rules)
        for i, (types, _, detail) in enumerate(self._rules):
            later = types if isinstance(types, tuple) else (types,)
            for earlier, _, earlier_detail in self._rules[:i]:
                if all(issubclass(t, earlier) for t in later):
                    raise ValueError(
                        f"error rule {detail!r} is unreachable: rule {earlier_detail!r} "
                        "comes first and catches all of its types; put specific rules first"
                    )
        self._cache: dict[type[BaseException], ErrorRule | None] = {}

    def rule(self, exc: BaseException) -> ErrorRule | None:
        """Return the first rule matching ``exc``, or None."""
        kind = type(exc)
        try:
            return self._cache[kind]
        except KeyError:
            pass
        found: ErrorRule | None = None
        for rule in self._rules:
            if isinstance(exc, rule[0]):
                found = rule
                break
        self._cache[kind] = found
        return found

    def translate(
        self,
        exc: BaseException,
        *,
        service: str,
        endpoint: str | None,
        operation: str,
        elapsed: float | None = None,
    ) -> BaseException:
        """Return the error to raise for ``exc`` (``exc`` itself when no rule maps it).

        The caller raises the result with ``raise err from exc`` so the driver's
        exception stays the ``__cause__``.
        """
        rule = self.rule(exc)
        if rule is None or rule[1] is None:
            return exc
        detail = f"{rule[2]}: {type(exc).__name__}: {exc}" if str(exc) else (
            f"{rule[2]}: {type(exc).__name__}"
        )
        return rule[1](
            detail, service=service, endpoint=endpoint, operation=operation, elapsed=elapsed
        )


IdempotencyTable = Mapping[str, bool]
"""Operation name -> whether a retry may repeat it (read-only mapping)."""


def idempotency_table(ops: Mapping[str, bool]) -> IdempotencyTable:
    """Freeze an idempotency table; every value must be a bool.

    Raises:
        TypeError: a value is not a bool.
    """
    for name, flag in ops.items():
        if not isinstance(flag, bool):
            raise TypeError(f"idempotency of {name!r} must be a bool, got {flag!r}")
    return MappingProxyType(dict(ops))
