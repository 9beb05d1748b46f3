"""The NSQ consumers: :class:`Consumer` (sync handler on worker threads, loop owned) and
:class:`AsyncConsumer` (async handler on the caller's running loop).

::

    def handle(msg):                       # raise to have the message requeued
        save(msg.key, msg.body)

    consumer = Consumer(handle, topic="orders", channel="billing",
                        seen_store=MemcacheSeenStore(Memcache(...)))
    consumer.start()
    ...
    consumer.close()                       # stop taking, drain, requeue the rest

Both speak the nsqd protocol directly (no pynsq): see ``_consumer`` for what happens to
each message and docs/nsq.md for the guarantees.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from resilience.clients.nsq._consumer import Engine
from resilience.clients.nsq._options import NsqOptions
from resilience.clients.nsq._proto import check_topic
from resilience.errors import ConfigError

__all__ = ["AsyncConsumer", "Consumer"]


def _options(name: str | None, environ: Mapping[str, str] | None, nsqd: Any, lookupd: Any,
             options: dict[str, Any]) -> NsqOptions:
    if isinstance(nsqd, str):
        nsqd = [s.strip() for s in nsqd.split(",") if s.strip()]
    if isinstance(lookupd, str):
        lookupd = [s.strip() for s in lookupd.split(",") if s.strip()]
    if nsqd is not None and lookupd is not None:
        raise ConfigError("give nsqd= or lookupd=, not both", service="nsq")
    if nsqd is not None:
        options.update(nsqd_tcp=tuple(nsqd), discovery="nsqd")
    if lookupd is not None:
        options.update(lookupd_http=tuple(lookupd), discovery="lookupd")
    return NsqOptions.from_env(name=name, environ=environ, **options)


class _ConsumerBase:
    def __init__(
        self,
        handler: Callable[..., Any],
        *,
        topic: str | None = None,
        channel: str | None = None,
        nsqd: str | list[str] | None = None,
        lookupd: str | list[str] | None = None,
        seen_store: Any = None,
        dead_letter: Callable[..., Any] | str | None = None,
        name: str | None = None,
        environ: Mapping[str, str] | None = None,
        **options: Any,
    ) -> None:
        self.options = _options(name, environ, nsqd, lookupd, options)
        self.topic = topic or self.options.topic
        self.channel = channel or self.options.channel
        check_topic(self.topic)  # a bad name is the caller's mistake: now, not at start
        check_topic(self.channel)
        self._args = (handler, seen_store, dead_letter)
        self._engine: Engine | None = None

    def _new_engine(self, executor: ThreadPoolExecutor | None) -> Engine:
        handler, store, dead_letter = self._args
        return Engine(self.options, self.topic, self.channel, handler, store, dead_letter,
                      executor)

    @property
    def stats(self) -> dict[str, int]:
        """Counters: received, processed, duplicates (skipped by key), requeued, failed,
        dead_lettered, store_errors."""
        return dict(self._engine.stats) if self._engine is not None else {}

    @property
    def connected(self) -> tuple[str, ...]:
        """The nsqd this consumer is subscribed to now."""
        return tuple(self._engine.live) if self._engine is not None else ()


class Consumer(_ConsumerBase):
    """A consumer whose handler runs on worker threads; it owns its event loop thread.

    Args:
        handler: ``handler(message)``; returning finishes the message, raising requeues
            it (with a per-message delay). It runs under ``handler_timeout`` (also as
            a ``resilience.deadline``); a message is touched while it works.
        topic, channel: the subscription (``RESILIENCE_NSQ_TOPIC`` / ``_CHANNEL``).
        nsqd: nsqd TCP addresses to subscribe to, or ``lookupd``: nsqlookupd HTTP
            addresses to discover them (else ``RESILIENCE_NSQ_DISCOVERY``).
        seen_store: a seen-store (:class:`MemorySeenStore`, :class:`MemcacheSeenStore`)
            for de-duplication by idempotency key; None processes every delivery.
        dead_letter: where a message past ``max_attempts`` goes: a callable
            ``dead_letter(message)`` or a topic name (default: topic +
            ``dead_letter_suffix``, on the nsqd that delivered it). It is finished only
            once that succeeded; it is never silently dropped.
        name, environ, **options: as every client; options are :class:`NsqOptions`.

    Construction opens nothing; :meth:`start` connects (in the background).
    """

    def __init__(self, handler: Callable[..., Any], **kwargs: Any) -> None:
        super().__init__(handler, **kwargs)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._pool: ThreadPoolExecutor | None = None

    def start(self) -> Consumer:
        """Start the loop thread and subscribe; returns at once."""
        if self._thread is not None:
            return self
        self._pool = ThreadPoolExecutor(self.options.max_in_flight,
                                        thread_name_prefix="nsq-handler")
        self._engine = engine = self._new_engine(self._pool)
        loop = self._loop = asyncio.new_event_loop()
        ready = threading.Event()

        def main() -> None:
            asyncio.set_event_loop(loop)
            loop.call_soon(ready.set)
            runner = loop.create_task(engine.run())
            loop.run_forever()
            runner.cancel()
            loop.run_until_complete(loop.shutdown_asyncgens())
            loop.close()

        self._thread = threading.Thread(target=main, name="nsq-consumer", daemon=True)
        self._thread.start()
        ready.wait(5.0)
        return self

    def close(self, drain: float | None = None) -> None:
        """Stop taking messages, let those in flight finish within ``drain`` seconds
        (``drain_timeout``), requeue the rest, close the connections, stop the loop."""
        loop, thread, engine = self._loop, self._thread, self._engine
        if loop is None or thread is None or engine is None or loop.is_closed():
            return
        budget = self.options.drain_timeout if drain is None else drain
        fut = asyncio.run_coroutine_threadsafe(engine.close(budget), loop)
        with contextlib.suppress(Exception):  # the loop is stopped whatever happened
            fut.result(budget + 2.0)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(5.0)
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)

    def __enter__(self) -> Consumer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()


class AsyncConsumer(_ConsumerBase):
    """A consumer on the caller's running loop; ``handler`` may be ``async def``
    (awaited on the loop) or plain (run on the loop's default executor). Arguments as
    :class:`Consumer`. ``await start()``, ``await aclose()`` or ``async with``."""

    _task: asyncio.Task[None] | None = None

    async def start(self) -> AsyncConsumer:
        if self._engine is None:
            self._engine = self._new_engine(None)
            self._task = asyncio.ensure_future(self._engine.run())
        return self

    async def aclose(self, drain: float | None = None) -> None:
        """As :meth:`Consumer.close`."""
        if self._engine is None or self._engine.closing:
            return
        await self._engine.close(self.options.drain_timeout if drain is None else drain)
        if self._task is not None:
            self._task.cancel()

    async def __aenter__(self) -> AsyncConsumer:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()
