"""What the sync and asyncio NSQ publishers share on top of the client base.

Endpoints are the nsqd, in the preferred order given (the local nsqd first), each with
its own breaker. A publish tries them in that order inside one deadline: an outcome
that proves the message was not queued (no connection, refused, ``E_PUB_FAILED``,
HTTP 503, an open breaker) moves on to the next nsqd; an ambiguous one (a timeout or a
closed connection after the request was written) is tried again only for a message
that carries an idempotency key (:mod:`~resilience.clients.nsq._envelope`), whose
consumer de-duplicates; otherwise it raises with ``ambiguous=True``.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from typing import Any, TypeVar

from resilience.clients._base import ClientBase
from resilience.clients._errormap import ErrorMap, IdempotencyTable, idempotency_table
from resilience.clients.nsq import _envelope
from resilience.clients.nsq._options import NsqOptions
from resilience.clients.nsq._proto import (
    ConnectFailed,
    ConnectTimeout,
    FrameError,
    NsqCallerError,
    ProtocolError,
    PublishFailed,
    check_topic,
    dpub,
    mpub,
    mpub_http_body,
    not_published,
    pub,
)
from resilience.core.breaker import BreakerRegistry
from resilience.core.clock import SYSTEM_CLOCK, Clock
from resilience.core.deadline import remaining
from resilience.core.events import EventBus
from resilience.errors import (
    BackendError,
    BackendProtocolError,
    BackendTimeoutError,
    BackendUnavailableError,
    ConfigError,
    DeadlineExceededError,
    RejectedError,
    ResilienceError,
)

__all__ = ["ERRORS", "IDEMPOTENT", "PublisherBase", "Request"]

D = TypeVar("D")

IDEMPOTENT: IdempotencyTable = idempotency_table({
    # A retry after an ambiguous outcome queues the message twice, with a new nsqd id:
    # never retried by the pipeline. The publisher itself fails over on outcomes that
    # prove nothing was queued, and retries ambiguous ones only for keyed messages.
    "publish": False,
    "mpublish": False,   # all or none per nsqd; a retry would repeat the whole batch
    "dpublish": False,
})
"""Which operations the pipeline may retry: none (docs/nsq.md#idempotency)."""

ERRORS = ErrorMap([
    (NsqCallerError, None, "rejected by nsqd as malformed"),
    (ConnectTimeout, BackendTimeoutError, "connect timed out"),
    (TimeoutError, BackendTimeoutError, "timed out"),
    (ConnectFailed, BackendUnavailableError, "connection failed"),
    (PublishFailed, BackendUnavailableError, "nsqd did not queue the message"),
    (ConnectionError, BackendUnavailableError, "connection lost"),
    (FrameError, BackendError, "nsqd error"),
    (ProtocolError, BackendProtocolError, "unexpected reply"),
    (OSError, BackendUnavailableError, "socket error"),
])
"""Driver (socket, protocol) exception -> resilience error, most specific first."""


class Request:
    """One publish, encoded for both transports: the TCP command, the HTTP path and body,
    and the keys of its messages (None where unkeyed)."""

    __slots__ = ("http_body", "keys", "path", "tcp")

    def __init__(self, op: str, topic: str, bodies: list[bytes], keys: list[str | None],
                 delay_ms: int) -> None:
        wrapped = [b if k is None else _envelope.encode(k, b)
                   for k, b in zip(keys, bodies, strict=True)]
        name = check_topic(topic)
        self.keys = keys
        if op == "mpublish":
            self.tcp = mpub(name, wrapped)
            self.path = f"/mpub?topic={topic}&binary=true"
            self.http_body = mpub_http_body(wrapped)
        elif op == "dpublish":
            self.tcp = dpub(name, delay_ms, wrapped[0])
            self.path = f"/pub?topic={topic}&defer={delay_ms}"
            self.http_body = wrapped[0]
        else:
            self.tcp = pub(name, wrapped[0])
            self.path = f"/pub?topic={topic}"
            self.http_body = wrapped[0]

    @property
    def keyed(self) -> bool:
        return all(k is not None for k in self.keys)


class PublisherBase(ClientBase[D]):
    """What the sync and async publishers share; see :class:`~resilience.clients.nsq.Publisher`."""

    service = "nsq"
    options_class = NsqOptions
    idempotent = IDEMPOTENT
    driver_modules = ()  # the nsqd protocol is spoken directly: pynsq is not needed
    extra = "nsq"
    options: NsqOptions

    def __init__(
        self,
        nsqd: str | Iterable[str] | None = None,
        *,
        keys: bool = False,
        name: str | None = None,
        environ: Mapping[str, str] | None = None,
        events: EventBus | None = None,
        breakers: BreakerRegistry | None = None,
        clock: Clock = SYSTEM_CLOCK,
        **options: Any,
    ) -> None:
        if isinstance(nsqd, str):
            nsqd = [s.strip() for s in nsqd.split(",") if s.strip()]
        elif nsqd is not None:
            nsqd = list(nsqd)
            if not nsqd:
                raise ConfigError("nsqd=[]: expected at least one host:port")
        transport = options.get("transport")
        field = "nsqd_http" if (transport or "") == "http" else "nsqd_tcp"
        overrides = {**options}
        if nsqd is not None:
            overrides[field] = tuple(nsqd)
        opts: NsqOptions = self._resolve(name, environ, overrides)
        if transport is None and nsqd is not None and opts.transport == "http":
            # RESILIENCE_NSQ_TRANSPORT=http with addresses given as nsqd=: HTTP ones.
            opts = self._resolve(name, environ, {**options, "nsqd_http": tuple(nsqd)})
        self.keys = keys
        self._http = opts.transport == "http"
        endpoints = opts.nsqd_http if self._http else opts.nsqd_tcp
        super().__init__(endpoints, opts, events=events, breakers=breakers, clock=clock)

    def _error_map(self) -> ErrorMap:
        return ERRORS

    def _request(self, op: str, topic: str, bodies: list[bytes], key: str | list[str] | None,
                 delay: float = 0.0) -> Request:
        """Encode a publish (raises ValueError for a bad topic, body, key or delay)."""
        if key is None:
            keys: list[str | None] = [
                _envelope.new_key() if self.keys else None for _ in bodies]
        elif isinstance(key, str):
            if len(bodies) != 1:
                raise ValueError("mpublish takes a list of keys, one per message")
            keys = [key]
        else:
            keys = list(key)
            if len(keys) != len(bodies):
                raise ValueError(f"{len(keys)} keys for {len(bodies)} messages")
        if not (0 <= delay <= 3600):
            raise ValueError(f"dpublish delay {delay!r}: expected 0 to 3600 seconds")
        return Request(op, topic, bodies, keys, int(delay * 1000))

    def _order(self, keyed: bool) -> Iterator[tuple[int, float | None]]:
        """``(endpoint index, attempt budget)`` to try, in preferred order; a keyed
        message may go round again (retry attempts, at least once per nsqd).

        A keyed message's attempt gets half of what remains, unless it is the last: a
        frozen nsqd then leaves time for the next one. Otherwise an attempt may use
        the whole remaining budget (None).
        """
        n = len(self._endpoints)
        total = max(n, self.options.retry.attempts) if keyed else n
        for i in range(total):
            share = None
            left = remaining()
            if keyed and i < total - 1 and left is not None:
                share = left / 2
            yield i % n, share

    @staticmethod
    def _failed_over(err: ResilienceError, keyed: bool,
                     last: ResilienceError | None) -> ResilienceError:
        """Mark ``err``; raise what the publish ends with, or return the error to
        report if the next nsqd fails too (a backend failure over a rejection)."""
        if isinstance(err, DeadlineExceededError) and last is not None:
            raise last  # the budget is spent: report the failure that spent it
        if isinstance(err, BackendError) and not not_published(err.__cause__):
            err.ambiguous = True
            if not keyed:
                raise err
        elif not isinstance(err, (RejectedError, BackendError)):
            raise err
        if last is None or not isinstance(err, RejectedError):
            return err
        return last
