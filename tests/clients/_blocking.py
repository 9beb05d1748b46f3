"""A sync client or its asyncio twin behind one blocking interface, for tests that run
the same assertions on both (``[sync]`` / ``[async]``).

One copy for the memcached, NSQ, ZooKeeper and search tests; a package may subclass
:class:`Blocking` to keep its own name for the wrapped client (``client.cache``,
``pub.pub``, ``client.zk``; the search tests use ``client.wrapped``).
"""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

B = TypeVar("B", bound="Blocking")


class Blocking:
    """Every public method of ``wrapped`` is reachable as an attribute; for an async
    client the coroutine runs to completion on the test's own event loop (so an ambient
    ``resilience.deadline`` of the caller applies: the task copies the context)."""

    def __init__(self, wrapped: Any, loop: asyncio.AbstractEventLoop | None) -> None:
        self.wrapped = wrapped
        self.loop = loop
        self.is_async = loop is not None

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self.wrapped, name)
        if not callable(attr):
            return attr

        def run(*args: Any, **kwargs: Any) -> Any:
            result = attr(*args, **kwargs)
            if self.loop is not None and inspect.isawaitable(result):
                return self.loop.run_until_complete(result)
            return result

        return run

    def close(self) -> None:
        if self.loop is not None:  # the async twin: built only with a loop
            self.loop.run_until_complete(self.wrapped.aclose())
        else:
            self.wrapped.close()


def blocking_factory(mode: str, adapter: type[B], sync_cls: type[Any], async_cls: type[Any],
                     defaults: dict[str, Any]) -> Iterator[Callable[..., B]]:
    """The body of a ``make_*`` fixture: yields ``make(endpoints, **options)`` building
    ``adapter`` over ``sync_cls`` (``mode == "sync"``) or ``async_cls`` with ``defaults``
    under the options; closes everything it made, then the loop."""
    loop = asyncio.new_event_loop() if mode == "async" else None
    made: list[B] = []

    def make(endpoints: list[str], **options: Any) -> B:
        kind = async_cls if loop is not None else sync_cls
        client = adapter(kind(endpoints, **{**defaults, **options}), loop)
        made.append(client)
        return client

    try:
        yield make
    finally:
        for client in made:
            client.close()
        if loop is not None:
            loop.close()
