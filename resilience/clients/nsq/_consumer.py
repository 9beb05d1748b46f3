"""The consumer's engine on one asyncio loop: connections, flow control, each message.

One task per nsqd (``nsqd_tcp``, or the nsqd lookupd lists for the topic, asked every
``lookupd_poll_interval``): connect, IDENTIFY (heartbeat interval, ``msg_timeout``),
SUB, RDY; answer heartbeats; a connection silent for two heartbeats (a frozen nsqd) is
closed and made again after ``reconnect_interval``. ``max_in_flight`` is split across
live connections.

Each message: past ``max_attempts`` deliveries it goes to the dead-letter handler or
topic and is finished only once that succeeded. A keyed message is claimed in the
seen-store first: already done -> finished unprocessed (a duplicate); claimed by
another delivery -> requeued; store failed -> requeued (never processed twice). Then
the handler runs under ``handler_timeout`` (and a ``resilience.deadline``), touched
every half ``msg_timeout`` while it works. Success -> the key is marked done, FIN.
Failure -> the claim is released, REQ with ``requeue_delay x attempts`` (capped), for
this message only: the reader never backs off as a whole.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import inspect
import json
import logging
import struct
from collections.abc import Callable
from concurrent.futures import Executor
from typing import Any

from resilience.clients.nsq import _envelope
from resilience.clients.nsq._aio import AConn, aconnect, http_get
from resilience.clients.nsq._options import NsqOptions
from resilience.clients.nsq._proto import (
    FRAME_ERROR,
    FRAME_MESSAGE,
    FRAME_RESPONSE,
    HEARTBEAT,
    MAGIC,
    NOP,
    ProtocolError,
    check_topic,
)
from resilience.core.deadline import deadline

__all__ = ["Engine", "Message"]

log = logging.getLogger("resilience.nsq")
_MSG_HEAD = struct.Struct(">qH16s")
_FATAL_FOR_CONSUMER = ("E_INVALID", "E_BAD_TOPIC", "E_BAD_CHANNEL", "E_AUTH", "E_UNAUTH")


class Message:
    """One delivery: ``body`` (the payload, envelope removed), ``key`` (None if the
    producer sent none), ``id``, ``attempts`` (1 on first delivery), ``timestamp`` (ns),
    ``nsqd`` (its address). ``touch()`` resets nsqd's timeout; callable from any thread."""

    __slots__ = ("_conn", "_loop", "attempts", "body", "id", "key", "nsqd", "raw", "timestamp")

    def __init__(self, data: bytes, conn: _Conn, loop: asyncio.AbstractEventLoop) -> None:
        self.timestamp, self.attempts, mid = _MSG_HEAD.unpack_from(data)
        self.id: bytes = mid
        self.raw = data[_MSG_HEAD.size:]
        self.key, self.body = _envelope.decode(self.raw)
        self.nsqd = conn.address
        self._conn, self._loop = conn, loop

    def touch(self) -> None:
        self._loop.call_soon_threadsafe(self._conn.send, b"TOUCH %s\n" % self.id)

    def __repr__(self) -> str:
        return f"<Message {self.id.decode(errors='replace')} key={self.key} try={self.attempts}>"


class _Conn:
    """One subscribed connection (used on the loop only)."""

    def __init__(self, address: str, conn: AConn) -> None:
        self.address, self.conn = address, conn
        self.rdy = 0

    def send(self, data: bytes) -> None:
        if not self.conn.writer.is_closing():
            self.conn.writer.write(data)

    def set_rdy(self, n: int) -> None:
        if n != self.rdy:
            self.rdy = n
            self.send(b"RDY %d\n" % n)


class Engine:
    """Everything a consumer does, on the loop that runs :meth:`run`."""

    def __init__(self, opts: NsqOptions, topic: str, channel: str, handler: Callable[..., Any],
                 store: Any, dead_letter: Callable[..., Any] | str | None,
                 executor: Executor | None) -> None:
        self.o, self.handler, self.store = opts, handler, store
        self.topic, self.channel = check_topic(topic), check_topic(channel)
        self.dead_letter = (dead_letter if dead_letter is not None
                            else topic + opts.dead_letter_suffix)
        self.executor = executor
        self.async_handler = inspect.iscoroutinefunction(handler)
        self.async_store = store is not None and inspect.iscoroutinefunction(store.claim)
        self.stats = dict.fromkeys(("received", "processed", "duplicates", "requeued",
                                    "failed", "dead_lettered", "store_errors"), 0)
        self.live: dict[str, _Conn] = {}
        self.inflight: dict[asyncio.Task[None], tuple[_Conn, Message]] = {}
        self.closing = False
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._publishers: dict[str, Any] = {}
        self._bg: set[asyncio.Task[Any]] = set()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop = asyncio.Event()

    # ---- connections ---------------------------------------------------------------

    async def run(self) -> None:
        """Connect and consume until :meth:`close`; discovery repeats for lookupd."""
        self._loop = asyncio.get_running_loop()
        while not self.closing:
            for address in await self._discover():
                if address not in self._tasks or self._tasks[address].done():
                    self._tasks[address] = asyncio.ensure_future(self._keep(address))
            if self.o.discovery != "lookupd":
                break
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stop.wait(), self.o.lookupd_poll_interval)

    async def _discover(self) -> list[str]:
        if self.o.discovery != "lookupd":
            return list(self.o.nsqd_tcp)
        found: list[str] = []
        for lookupd in self.o.lookupd_http:
            try:
                body = await http_get(lookupd, f"/lookup?topic={self.topic.decode()}",
                                      self.o.timeout)
                doc = json.loads(body)
                for p in (doc.get("producers") or doc.get("data", {}).get("producers") or []):
                    found.append(f"{p['broadcast_address']}:{p['tcp_port']}")
            except Exception as exc:  # a lookupd down, or the topic not there yet
                log.debug("nsq lookupd %s: %r", lookupd, exc)
        return sorted(set(found))

    async def _keep(self, address: str) -> None:
        while not self.closing:
            try:
                await self._session(address)
            except Exception as exc:
                log.info("nsq consumer connection to %s: %r", address, exc)
            if self.closing:
                return
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stop.wait(), self.o.reconnect_interval)

    async def _session(self, address: str) -> None:
        o = self.o
        conn = AConn(*await aconnect(address, o.connect_timeout))
        sub = _Conn(address, conn)
        try:
            identify = json.dumps({
                "client_id": "resilience", "user_agent": "resilience-nsq",
                "heartbeat_interval": int(o.heartbeat_interval * 1000),
                "msg_timeout": int(o.msg_timeout * 1000), "feature_negotiation": False,
            }).encode()
            conn.greeted = True
            async with asyncio.timeout(o.timeout + o.connect_timeout):
                await self._expect_ok(conn, MAGIC + b"IDENTIFY\n" + struct.pack(">l", len(identify))
                                      + identify)
                await self._expect_ok(conn, b"SUB %s %s\n" % (self.topic, self.channel))
            self.live[address] = sub
            self._balance()
            silent = 2 * o.heartbeat_interval + 1.0  # nsqd is frozen or gone
            while True:
                async with asyncio.timeout(silent):
                    frames = await conn.frames()
                for kind, data in frames:
                    if kind == FRAME_RESPONSE and data == HEARTBEAT:
                        sub.send(NOP)
                    elif kind == FRAME_MESSAGE:
                        self._dispatch(sub, Message(data, sub, asyncio.get_running_loop()))
                    elif kind == FRAME_ERROR:
                        text = data.decode(errors="replace")
                        if text.startswith(_FATAL_FOR_CONSUMER):
                            raise ProtocolError(text)
                        log.debug("nsq %s: %s", address, text)  # E_FIN_FAILED...: harmless
        finally:
            if self.live.get(address) is sub:
                del self.live[address]
            conn.close()
            self._balance()

    @staticmethod
    async def _expect_ok(conn: AConn, data: bytes) -> None:
        reply = await conn.request(data)
        if reply != b"OK":
            raise ProtocolError(f"unexpected reply {reply[:40]!r}")

    def _balance(self) -> None:
        if self.closing or not self.live:
            return
        share = max(1, self.o.max_in_flight // len(self.live))
        for sub in self.live.values():
            sub.set_rdy(share)

    # ---- messages ------------------------------------------------------------------

    def _dispatch(self, sub: _Conn, msg: Message) -> None:
        self.stats["received"] += 1
        task = asyncio.ensure_future(self._handle(sub, msg))
        self.inflight[task] = (sub, msg)
        task.add_done_callback(self.inflight.pop)

    def _fin(self, sub: _Conn, msg: Message) -> None:
        sub.send(b"FIN %s\n" % msg.id)

    def _req(self, sub: _Conn, msg: Message, delay: float | None = None) -> None:
        if delay is None:
            delay = min(self.o.requeue_delay * msg.attempts, self.o.max_requeue_delay)
        self.stats["requeued"] += 1
        sub.send(b"REQ %s %d\n" % (msg.id, int(delay * 1000)))

    async def _call(self, fn: Callable[..., Any], *args: Any, is_async: bool) -> Any:
        if is_async:
            return await fn(*args)
        ctx = contextvars.copy_context()
        return await asyncio.get_running_loop().run_in_executor(self.executor, ctx.run, fn, *args)

    async def _store(self, method: str, *args: Any) -> Any:
        async with asyncio.timeout(self.o.timeout * 2 + 0.05):  # its own deadline, plus slack
            return await self._call(getattr(self.store, method), *args, is_async=self.async_store)

    async def _handle(self, sub: _Conn, msg: Message) -> None:
        o = self.o
        if msg.attempts > o.max_attempts:
            return await self._dead_letter(sub, msg)
        claim_ttl = o.handler_timeout + 2.0
        keyed = self.store is not None and msg.key is not None
        if keyed:
            try:
                state = await self._store("claim", msg.key, claim_ttl)
            except Exception as exc:
                self.stats["store_errors"] += 1
                log.info("nsq seen-store unavailable, requeueing %r: %r", msg, exc)
                return self._req(sub, msg)
            if state == "done":
                self.stats["duplicates"] += 1
                return self._fin(sub, msg)
            if state != "new":  # another delivery holds the claim: ask again later
                return self._req(sub, msg)
        try:
            await self._run_handler(msg, keyed)
        except Exception as exc:
            self.stats["failed"] += 1
            log.info("nsq handler failed on %r: %r", msg, exc)
            if keyed and not isinstance(exc, TimeoutError):  # a timed-out thread may still run
                with contextlib.suppress(Exception):
                    await self._store("release", msg.key)
            return self._req(sub, msg)
        if keyed:
            try:
                await self._store("done", msg.key, o.dedup_window)
            except Exception as exc:  # processed: finish it; its claim expires later
                self.stats["store_errors"] += 1
                log.warning("nsq seen-store could not mark %r done: %r", msg, exc)
        self.stats["processed"] += 1
        self._fin(sub, msg)

    async def _run_handler(self, msg: Message, keyed: bool) -> None:
        touch = asyncio.ensure_future(self._touch(msg._conn, msg))
        budget = self.o.handler_timeout
        try:
            if self.async_handler:
                async with asyncio.timeout(budget):
                    with deadline(budget):
                        await self.handler(msg)
            else:
                def run() -> None:
                    with deadline(budget):  # resilience calls inside are bounded too
                        self.handler(msg)
                fut = asyncio.ensure_future(self._call(run, is_async=False))
                try:
                    await asyncio.wait_for(asyncio.shield(fut), budget)
                except TimeoutError:
                    if keyed:  # the thread may still succeed: then its key is done
                        fut.add_done_callback(lambda f: self._late(f, msg))
                    raise
        finally:
            touch.cancel()

    def _late(self, fut: asyncio.Future[Any], msg: Message) -> None:
        if not fut.cancelled() and fut.exception() is None and not self.closing:
            self._spawn(self._store("done", msg.key, self.o.dedup_window))

    def _spawn(self, coro: Any) -> None:
        task = asyncio.ensure_future(coro)
        self._bg.add(task)
        task.add_done_callback(self._bg.discard)

    async def _touch(self, sub: _Conn, msg: Message) -> None:
        every = self.o.msg_timeout / 2
        while True:
            await asyncio.sleep(every)
            sub.send(b"TOUCH %s\n" % msg.id)

    async def _dead_letter(self, sub: _Conn, msg: Message) -> None:
        target = self.dead_letter
        try:
            if isinstance(target, str):
                pub = self._publishers.get(sub.address)
                if pub is None:
                    from resilience.clients.nsq._async import AsyncPublisher

                    pub = self._publishers[sub.address] = AsyncPublisher(
                        [sub.address], timeout=self.o.timeout, environ={})
                await pub.publish(target, msg.raw)  # the envelope (and key) kept
            else:
                async with asyncio.timeout(self.o.handler_timeout):
                    await self._call(target, msg, is_async=inspect.iscoroutinefunction(target))
        except Exception as exc:
            log.warning("nsq dead-letter of %r failed, requeueing: %r", msg, exc)
            return self._req(sub, msg)
        self.stats["dead_lettered"] += 1
        self._fin(sub, msg)

    # ---- close ---------------------------------------------------------------------

    async def close(self, drain: float) -> None:
        """RDY 0 everywhere, let in-flight messages finish within ``drain`` seconds,
        requeue the rest, then close every connection."""
        self.closing = True
        self._stop.set()
        for sub in list(self.live.values()):
            sub.set_rdy(0)
        pending = set(self.inflight)
        if pending:
            await asyncio.wait(pending, timeout=drain)
        for task, (sub, msg) in list(self.inflight.items()):
            task.cancel()
            self._req(sub, msg, 0.0)
        for sub in list(self.live.values()):
            sub.send(b"CLS\n")  # written now: the transport sends at once when idle
            with contextlib.suppress(Exception):
                async with asyncio.timeout(0.5):
                    await sub.conn.writer.drain()
        for task in [*self._tasks.values(), *self._bg]:
            task.cancel()
        for pub in self._publishers.values():
            await pub.aclose()
        await asyncio.gather(*self._tasks.values(), *self._bg, return_exceptions=True)
