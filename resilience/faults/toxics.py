"""Toxics: the faults a :class:`~resilience.faults.proxy.FaultProxy` applies to bytes.

A toxic is a small frozen settings dataclass plus one ``async pipe(data, flow)`` (after
toxiproxy's ``Toxic.Pipe``). The proxy runs every chunk read from one side through the
toxics of that direction, in the order they were added, and forwards what comes out:

* ``direction`` is ``"upstream"`` (client -> server) or ``"downstream"`` (server ->
  client; the default, as in toxiproxy).
* ``probability`` is decided once per connection and toxic, when the toxic first meets
  the connection, from the proxy's seeded ``random.Random`` (never the global one): with
  the same seed and the same sequence of connections, the same connections are hit.
* ``pipe`` returns the bytes to pass on (``b""`` swallows the chunk) and may act on the
  connection through ``flow`` (sleep, write directly, close, reset).
* ``attach`` runs when the toxic meets a connection (at connect, or at once for live
  connections when the toxic is added): it starts timers such as "reset after 100 ms".
* ``holds_eof`` toxics also swallow the end of stream, so a closed side stays unseen.

Toxics are registered by name (``@register("latency")``); :func:`parse_toxic` builds one
from the command-line form ``latency:latency_ms=100,jitter_ms=10``.
"""

from __future__ import annotations

import dataclasses
import typing
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar, Protocol

__all__ = [
    "TOXICS",
    "Bandwidth",
    "Blackhole",
    "Flow",
    "Garbage",
    "Latency",
    "LimitData",
    "Refuse",
    "Reset",
    "Slicer",
    "SlowClose",
    "Timeout",
    "Toxic",
    "parse_toxic",
    "register",
]

DIRECTIONS = ("upstream", "downstream")


class Flow(Protocol):
    """What a toxic sees of one direction of one proxied connection."""

    direction: str
    arrived: float  # monotonic time the current chunk was read
    state: dict[str, Any]  # per connection, direction and toxic name: scratch space

    def now(self) -> float: ...
    def rand(self) -> float: ...
    def randint(self, lo: int, hi: int) -> int: ...
    async def sleep(self, seconds: float) -> None: ...
    async def write(self, data: bytes) -> None: ...
    def close(self) -> None: ...
    def reset(self) -> None: ...
    def call_later(self, owner: str, seconds: float, fn: Callable[[], None]) -> None: ...


@dataclass(frozen=True, kw_only=True)
class Toxic:
    """Base settings every toxic has.

    Args:
        direction: "upstream" (to the server) or "downstream" (to the client).
        probability: share of connections this toxic applies to, in [0, 1].
        name: unique name on a proxy; defaults to ``<kind>_<direction>``.

    Raises:
        ValueError: a setting is out of range; the message names it.
    """

    kind: ClassVar[str] = "toxic"
    holds_eof: ClassVar[bool] = False
    proxy_level: ClassVar[bool] = False  # acts on the listener, not on connections

    direction: str = "downstream"
    probability: float = 1.0
    name: str = ""

    def __post_init__(self) -> None:
        if self.direction not in DIRECTIONS:
            raise ValueError(
                f"{self.kind}: direction={self.direction!r}; accepted: upstream, downstream"
            )
        if not 0.0 <= self.probability <= 1.0:
            raise ValueError(f"{self.kind}: probability={self.probability!r}; must be in [0, 1]")
        if not self.name:
            object.__setattr__(self, "name", f"{self.kind}_{self.direction}")
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if isinstance(value, int | float) and not isinstance(value, bool) and value < 0:
                raise ValueError(f"{self.kind}: {f.name}={value!r}; must be >= 0")

    def attach(self, flow: Flow) -> None:
        """Called when this toxic starts applying to a connection; default: nothing."""

    async def pipe(self, data: bytes, flow: Flow) -> bytes:
        """Transform one chunk; return what to forward (``b""`` swallows it)."""
        return data


TOXICS: dict[str, type[Toxic]] = {}

T = typing.TypeVar("T", bound=type[Toxic])


def register(kind: str) -> Callable[[T], T]:
    """Class decorator: register a toxic under ``kind`` (used by the CLI and schedules)."""

    def deco(cls: T) -> T:
        cls.kind = kind
        TOXICS[kind] = cls
        return cls

    return deco


async def _pass_then_end(limit: int, data: bytes, flow: Flow, end: Callable[[], None]) -> bytes:
    """Forward this direction's first ``limit`` bytes, then ``end`` the connection."""
    passed = flow.state.get("passed", 0)
    room = limit - passed
    flow.state["passed"] = passed + len(data)
    if room > len(data):
        return data
    if room > 0:
        await flow.write(data[:room])
    end()
    return b""


@register("latency")
@dataclass(frozen=True, kw_only=True)
class Latency(Toxic):
    """Delay every chunk by ``latency_ms`` +- ``jitter_ms`` (uniform), counted from
    when the chunk arrived, so back-to-back chunks are not delayed twice."""

    latency_ms: float = 100.0
    jitter_ms: float = 0.0

    async def pipe(self, data: bytes, flow: Flow) -> bytes:
        jitter = (flow.rand() * 2 - 1) * self.jitter_ms if self.jitter_ms else 0.0
        due = flow.arrived + max(0.0, self.latency_ms + jitter) / 1000
        await flow.sleep(due - flow.now())
        return data


@register("blackhole")
@dataclass(frozen=True, kw_only=True)
class Blackhole(Toxic):
    """Swallow every byte (and the end of stream): the connection stays ESTABLISHED and
    the peer waits forever for a reply. The slide's hang. Removing it lets later bytes
    through again; swallowed bytes are gone."""

    holds_eof: ClassVar[bool] = True

    async def pipe(self, data: bytes, flow: Flow) -> bytes:
        return b""


@register("timeout")
@dataclass(frozen=True, kw_only=True)
class Timeout(Toxic):
    """Swallow bytes, then close the connection ``timeout_ms`` after the toxic met it
    (0 = never close: a blackhole)."""

    holds_eof: ClassVar[bool] = True
    timeout_ms: float = 1000.0

    def attach(self, flow: Flow) -> None:
        if self.timeout_ms:
            flow.call_later(self.name, self.timeout_ms / 1000, flow.close)

    async def pipe(self, data: bytes, flow: Flow) -> bytes:
        return b""


@register("reset")
@dataclass(frozen=True, kw_only=True)
class Reset(Toxic):
    """Reset both sides (RST, through SO_LINGER 0): ``after_ms`` after the toxic met the
    connection (0 = at once: at connect for new connections), or, with ``after_bytes``,
    once that many bytes have passed in this direction (mid-stream)."""

    after_ms: float = 0.0
    after_bytes: int = 0

    def attach(self, flow: Flow) -> None:
        if self.after_bytes:
            return
        if self.after_ms:
            flow.call_later(self.name, self.after_ms / 1000, flow.reset)
        else:
            # Reset here, not from a timer on the next loop turn: by then the pumps may
            # have forwarded bytes already waiting, in either direction (a request
            # reaching the server although its client sees a reset).
            flow.reset()

    async def pipe(self, data: bytes, flow: Flow) -> bytes:
        if not self.after_bytes:
            return data
        return await _pass_then_end(self.after_bytes, data, flow, flow.reset)


@register("bandwidth")
@dataclass(frozen=True, kw_only=True)
class Bandwidth(Toxic):
    """Limit throughput to ``rate_kbps`` kilobytes (1000 B) per second, sending in
    pieces of a tenth of a second each so the rate holds within a chunk."""

    rate_kbps: float = 100.0

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.rate_kbps <= 0:
            raise ValueError(f"bandwidth: rate_kbps={self.rate_kbps!r}; must be > 0")

    async def pipe(self, data: bytes, flow: Flow) -> bytes:
        rate = self.rate_kbps * 1000
        piece = max(1, int(rate / 10))
        for i in range(0, len(data), piece):
            part = data[i : i + piece]
            await flow.sleep(len(part) / rate)
            await flow.write(part)
        return b""


@register("slicer")
@dataclass(frozen=True, kw_only=True)
class Slicer(Toxic):
    """Cut chunks into slices of ``average_size`` +- ``size_variation`` bytes, sent
    ``delay_us`` microseconds apart: the slow drip of a congested link."""

    average_size: int = 8
    size_variation: int = 0
    delay_us: int = 1000

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.average_size < 1 or self.size_variation >= self.average_size:
            raise ValueError(
                f"slicer: average_size={self.average_size!r}, "
                f"size_variation={self.size_variation!r}; need average_size >= 1 "
                "and size_variation < average_size"
            )

    async def pipe(self, data: bytes, flow: Flow) -> bytes:
        i = 0
        while i < len(data):
            var = self.size_variation
            size = self.average_size + (flow.randint(-var, var) if var else 0)
            if i:
                await flow.sleep(self.delay_us / 1e6)
            await flow.write(data[i : i + size])
            i += size
        return b""


@register("slow_close")
@dataclass(frozen=True, kw_only=True)
class SlowClose(Toxic):
    """Delay the end of stream by ``delay_ms``: the peer sees the close late."""

    delay_ms: float = 1000.0


@register("limit_data")
@dataclass(frozen=True, kw_only=True)
class LimitData(Toxic):
    """Forward ``limit_bytes`` bytes in this direction, then close the connection."""

    limit_bytes: int = 1024

    async def pipe(self, data: bytes, flow: Flow) -> bytes:
        return await _pass_then_end(self.limit_bytes, data, flow, flow.close)


@register("garbage")
@dataclass(frozen=True, kw_only=True)
class Garbage(Toxic):
    """Corrupt bytes: each byte, with chance ``ratio``, is XORed with a random non-zero
    byte (so it always changes); the length is kept."""

    ratio: float = 1.0

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.ratio > 1:
            raise ValueError(f"garbage: ratio={self.ratio!r}; must be in [0, 1]")

    async def pipe(self, data: bytes, flow: Flow) -> bytes:
        if self.ratio >= 1:
            return bytes(b ^ flow.randint(1, 255) for b in data)
        return bytes(b ^ flow.randint(1, 255) if flow.rand() < self.ratio else b for b in data)


@register("refuse")
@dataclass(frozen=True, kw_only=True)
class Refuse(Toxic):
    """Stop accepting: the proxy closes its listening socket, so new connects fail with
    ECONNREFUSED; live connections go on. Removing it listens again on the same port.
    ``direction`` and ``probability`` do not apply."""

    proxy_level: ClassVar[bool] = True


def _convert(kind: str, field: str, raw: str, typ: Any) -> Any:
    try:
        if typ is bool:
            if raw.lower() not in ("1", "0", "true", "false", "yes", "no"):
                raise ValueError(raw)
            return raw.lower() in ("1", "true", "yes")
        if typ in (int, float):
            return typ(raw)
        return raw
    except ValueError:
        raise ValueError(
            f"toxic {kind!r}: {field}={raw!r} is not a valid {typ.__name__}"
        ) from None


def toxic_fields(kind: str) -> dict[str, Any]:
    """The settable fields of a registered toxic kind and their types."""
    cls = TOXICS[kind]
    hints = typing.get_type_hints(cls)
    return {f.name: hints[f.name] for f in dataclasses.fields(cls)}


def parse_toxic(spec: str) -> Toxic:
    """Build a toxic from ``kind[:field=value,...]``, e.g. ``latency:latency_ms=100``.

    Raises:
        ValueError: unknown kind or field, or a bad value; the message lists what is
            accepted.
    """
    kind, _, rest = spec.strip().partition(":")
    if kind not in TOXICS:
        raise ValueError(f"unknown toxic {kind!r} in {spec!r}; accepted: {', '.join(TOXICS)}")
    fields = toxic_fields(kind)
    kwargs: dict[str, Any] = {}
    for item in filter(None, (p.strip() for p in rest.split(","))):
        key, eq, raw = item.partition("=")
        key = key.strip()
        if not eq or key not in fields:
            raise ValueError(
                f"toxic {kind!r}: bad setting {item!r}; accepted fields: "
                f"{', '.join(f'{k}=<{t.__name__}>' for k, t in fields.items())}"
            )
        kwargs[key] = _convert(kind, key, raw.strip(), fields[key])
    return TOXICS[kind](**kwargs)
