"""Multi-key operations of :class:`~resilience.clients.memcache.Memcache`.

Keys are grouped by the node that owns them and each group is one guarded call to that
node (``cache._call``), so each node's breaker, bulkhead and retry apply to its own share.

Time: the whole operation has one deadline (``timeout`` or the default, shrunk by any
ambient deadline), and every node gets that whole deadline: the nodes are asked
concurrently (:mod:`._fanout`), so N hanging nodes cost one budget, not N, and N nodes
behind a slow network about one round trip. The caller's thread asks the nodes in turn
while they answer fast (a loopback round trip is cheaper than a thread handoff); after
``HEDGE_AFTER`` (1 ms) helper threads take the nodes it has not reached yet, with the
caller's deadline.

Partial failure: every group is tried. With ``fail_open`` (reads only), keys of failed
nodes are simply absent from the result (misses). Otherwise the first error (in node
order) is raised once all groups are done, carrying what did work, so a caller may use
it:

- ``err.partial``: for reads, the values found on the nodes that answered; for
  ``set_many``, the keys those nodes did not store;
- ``err.failed_keys``: the keys of the nodes that failed.

An error that is not a ResilienceError (a caller's ValueError) is raised as it is, also
after every group is done.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any, TypeVar

from resilience.core.deadline import deadline
from resilience.errors import ResilienceError

if TYPE_CHECKING:
    from resilience.clients.memcache._sync import Memcache

__all__ = ["delete_many", "get_many", "gets_many", "set_many"]

K = TypeVar("K", str, bytes)
R = TypeVar("R")


def _groups(cache: Memcache, keys: Iterable[K]) -> dict[int, list[K]]:
    groups: dict[int, list[K]] = {}
    for key in keys:
        groups.setdefault(cache._index(key), []).append(key)
    return groups


def _fan_out(
    cache: Memcache,
    op: str,
    groups: Mapping[int, list[K]],
    fn: Callable[[Any, list[K]], R],
    merge: Callable[[R], None],
    timeout: float | None,
    fail_open: bool,
) -> list[K]:
    """Run ``fn(client, group)`` per node, concurrently, merging results in node order;
    return the failed keys."""
    total = cache.options.timeout if timeout is None else timeout
    items = list(groups.items())
    call = cache._call
    tasks = [_task(call, op, index, fn, group, total) for index, group in items]
    if len(tasks) < 2:  # one node (or none): no deadline of our own, no thread
        outcomes = cache._fanout.run(tasks)
    else:
        with deadline(total, clock=cache._clock):  # the pipeline reads it on this clock
            outcomes = cache._fanout.run(tasks)
    failed: list[K] = []
    first: ResilienceError | None = None
    other: BaseException | None = None
    for (_, group), outcome in zip(items, outcomes, strict=True):
        if isinstance(outcome, ResilienceError):
            failed.extend(group)
            first = first or outcome
        elif isinstance(outcome, BaseException):
            other = other or outcome
        else:
            merge(outcome)
    if other is not None:
        raise other
    if first is not None and not fail_open:
        first.failed_keys = tuple(failed)
        raise first
    return failed


def _task(call: Callable[..., R], op: str, index: int, fn: Callable[[Any, list[K]], R],
          group: list[K], total: float) -> Callable[[], R]:
    return lambda: call(op, index, lambda client: fn(client, group), total)


def get_many(cache: Memcache, keys: Iterable[K], *, timeout: float | None = None) -> dict[K, Any]:
    """Values of the ``keys`` that are present (absent keys are misses).

    Raises:
        ResilienceError: a node failed (unless fail_open); ``.partial`` holds the values
            from the nodes that answered, ``.failed_keys`` the keys not read.
    """
    found: dict[K, Any] = {}
    try:
        _fan_out(cache, "get_many", _groups(cache, keys), lambda c, g: c.get_many(g),
                 found.update, timeout, cache.options.fail_open)
    except ResilienceError as err:
        err.partial = found
        raise
    return found


def gets_many(cache: Memcache, keys: Iterable[K], *,
              timeout: float | None = None) -> dict[K, tuple[Any, Any]]:
    """``(value, cas)`` of the ``keys`` that are present; failures as in get_many."""
    found: dict[K, tuple[Any, Any]] = {}
    try:
        _fan_out(cache, "gets_many", _groups(cache, keys), lambda c, g: c.gets_many(g),
                 found.update, timeout, cache.options.fail_open)
    except ResilienceError as err:
        err.partial = found
        raise
    return found


def set_many(cache: Memcache, values: Mapping[K, Any], expire: int = 0, *,
             timeout: float | None = None) -> list[K]:
    """Store every value (acknowledged); return the keys the server did not store.

    Raises:
        ResilienceError: a node failed; ``.partial`` lists the keys the other nodes did
            not store, ``.failed_keys`` the keys of the failed nodes (state unknown).
    """
    not_stored: list[K] = []
    groups = _groups(cache, values)

    def store(client: Any, group: list[K]) -> list[K]:
        return list(client.set_many({k: values[k] for k in group}, expire, noreply=False))

    try:
        _fan_out(cache, "set_many", groups, store, not_stored.extend, timeout, False)
    except ResilienceError as err:
        err.partial = not_stored
        raise
    return not_stored


def delete_many(cache: Memcache, keys: Iterable[K], *, timeout: float | None = None) -> bool:
    """Delete every key (acknowledged). True once every node answered.

    Raises:
        ResilienceError: a node failed; ``.failed_keys`` are the keys whose deletion is
            unknown.
    """
    _fan_out(cache, "delete_many", _groups(cache, keys),
             lambda c, g: c.delete_many(g, noreply=False), lambda _: None, timeout, False)
    return True
