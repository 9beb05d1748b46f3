"""Healthy-path cost of the asyncio memcached wrapper against aiomcache and emcache.

Every subject reads a 100-byte value: ``get`` of one key from N concurrent tasks (N in
1, 16, 128) and ``get_many`` of 10 keys from one task. Each peer gets N connections
(``pool N``), as the wrapper does, and, where N > 1, also runs with its defaults
(aiomcache ``pool_size=2``, emcache ``max_connections=2``; the wrapper's default pool is
16). The wrapper is :class:`resilience.clients.memcache.AsyncMemcache` with a 1 s budget,
its default retry and breaker settings except the slow-call threshold, raised from 100 ms
to the budget: the first round of 128 tasks opens 128 connections at once, which takes
0.1-0.2 s on a busy 2-vCPU machine, and every call of that burst would count as slow
and open the breaker. emcache keeps its own 1 s timeout.

Rounds are interleaved as in :mod:`resilience.bench.memcached` (every subject takes
every position of a cycle once), each round ``N`` tasks of ``max(4, round_calls // N)``
calls.
A row's wall figure is the round's elapsed time divided by its calls (so calls/s is
1e6 over it), its CPU figure this process's CPU time per call; both are medians over
rounds, with the min..max of the wall figure. ``x raw`` and *CPU added* compare with
aiomcache given the same connections. Bounded: at most ``cycles`` cycles and
``time_limit`` seconds per operation, a round cut (and the run failed) after 10 s.
"""

from __future__ import annotations

import asyncio
import statistics
import time
from collections.abc import Awaitable, Callable
from typing import Any

from resilience.bench.model import OverheadRow

__all__ = ["INTRO", "cells", "header", "is_async", "overhead"]

DATASTORE = "memcached asyncio"
KEYS = [f"bench:async:{i}".encode() for i in range(10)]
VALUE = b"v" * 100
BASELINE = "aiomcache (pool N)"
_ROUND_CAP = 10.0

Call = Callable[[], Awaitable[object]]


class _Peer:
    """One client: its ``get`` and 10-key ``get_many`` calls and how to close it."""

    def __init__(self, get: Call, get_many: Call, close: Callable[[], Awaitable[Any]]) -> None:
        self.get, self.get_many, self.close = get, get_many, close


async def _wrapper(host: str, port: int, pool: int) -> _Peer:
    from resilience.clients.memcache import AsyncMemcache

    cache = AsyncMemcache([f"{host}:{port}"], timeout=1.0, connect_timeout=1.0,
                          pool_size=pool,
                          environ={"RESILIENCE_MEMCACHE_BREAKER_SLOW_CALL_MS": "1000"})
    key = KEYS[0]
    return _Peer(lambda: cache.get(key), lambda: cache.get_many(KEYS), cache.aclose)


async def _aiomcache(host: str, port: int, pool: int | None) -> _Peer:
    import aiomcache

    client = aiomcache.Client(host, port) if pool is None else aiomcache.Client(
        host, port, pool_size=pool)
    key = KEYS[0]
    return _Peer(lambda: client.get(key), lambda: client.multi_get(*KEYS), client.close)


async def _emcache(host: str, port: int, pool: int | None) -> _Peer:
    import emcache

    address = [emcache.MemcachedHostAddress(host, port)]
    client = await (emcache.create_client(address) if pool is None else
                    emcache.create_client(address, max_connections=pool))
    key = KEYS[0]
    return _Peer(lambda: client.get(key), lambda: client.get_many(KEYS), client.close)


def _subjects(n: int) -> dict[str, Callable[[str, int], Awaitable[_Peer]]]:
    subjects: dict[str, Callable[[str, int], Awaitable[_Peer]]] = {
        BASELINE: lambda h, p: _aiomcache(h, p, n),
        "emcache (pool N)": lambda h, p: _emcache(h, p, n),
        "wrapper (pool N)": lambda h, p: _wrapper(h, p, n),
    }
    if n > 1:
        subjects["aiomcache (default)"] = lambda h, p: _aiomcache(h, p, None)
        subjects["emcache (default)"] = lambda h, p: _emcache(h, p, None)
    return subjects


async def _round(call: Call, tasks: int, each: int) -> None:
    async def worker() -> None:
        for _ in range(each):
            await call()

    if tasks == 1:
        await asyncio.wait_for(worker(), _ROUND_CAP)
    else:
        await asyncio.wait_for(asyncio.gather(*(worker() for _ in range(tasks))), _ROUND_CAP)


async def _check(peer: _Peer, name: str) -> None:
    # A subject that reads misses would measure nothing worth comparing.
    value = await peer.get()
    found = getattr(value, "value", value)  # emcache returns an Item
    if found != VALUE:
        raise RuntimeError(f"{name}: get read {found!r:.40}, not the benchmark value")


async def _op_rows(host: str, port: int, op: str, tasks: int, cycles: int,
                   time_limit: float, round_calls: int) -> list[OverheadRow]:
    makers = _subjects(tasks)
    names = list(makers)
    peers = {name: await makers[name](host, port) for name in names}
    each = max(4, round_calls // tasks)
    calls = tasks * each
    wall: dict[str, list[float]] = {name: [] for name in names}  # µs/call per round
    cpu: dict[str, list[float]] = {name: [] for name in names}
    try:
        for name, peer in peers.items():  # warm up: connect every connection
            await _check(peer, name)
            await _round(getattr(peer, op), tasks, 4)
        deadline = time.monotonic() + time_limit
        for cycle in range(cycles):
            if cycle >= 3 and time.monotonic() > deadline:
                break
            for r in range(len(names)):
                for name in names[r:] + names[:r]:
                    call = getattr(peers[name], op)
                    start, start_cpu = time.perf_counter(), time.process_time()
                    await _round(call, tasks, each)
                    wall[name].append((time.perf_counter() - start) / calls * 1e6)
                    cpu[name].append((time.process_time() - start_cpu) / calls * 1e6)
    finally:
        for peer in peers.values():
            await peer.close()
    label = f"{op}{'(10 keys)' if op == 'get_many' else ''}, {tasks} task{'s' * (tasks > 1)}"
    base, base_cpu = wall[BASELINE], cpu[BASELINE]
    return [
        OverheadRow(
            DATASTORE, label, name, statistics.median(wall[name]), min(wall[name]),
            max(wall[name]),
            statistics.median(v / b for v, b in zip(wall[name], base, strict=True)),
            statistics.median(cpu[name]),
            statistics.median(c - b for c, b in zip(cpu[name], base_cpu, strict=True)),
        )
        for name in names
    ]


async def _overhead(host: str, port: int, cycles: int, time_limit: float,
                    round_calls: int) -> list[OverheadRow]:
    from resilience.clients.memcache import AsyncMemcache

    async with AsyncMemcache([f"{host}:{port}"], timeout=2.0, environ={}) as cache:
        if await cache.set_many(dict.fromkeys(KEYS, VALUE)):
            raise RuntimeError(f"{host}:{port}: could not store the benchmark keys")
    rows: list[OverheadRow] = []
    for op, tasks in (("get", 1), ("get", 16), ("get", 128), ("get_many", 1)):
        rows += await _op_rows(host, port, op, tasks, cycles, time_limit, round_calls)
    return rows


def overhead(host: str, port: int, calls: int, *, time_limit: float | None = None,
             round_calls: int = 512, cycles: int | None = None) -> list[OverheadRow]:
    """Rows of every subject for ``get`` at 1, 16 and 128 tasks and ``get_many`` at 1:
    at most ``cycles`` (by default ``max(5, calls // 250)``) cycles, at least 3 of them,
    stopping after ``time_limit`` seconds per operation (by default ``calls / 500``;
    see the module docstring)."""
    limit = calls / 500 if time_limit is None else time_limit
    count = max(5, calls // 250) if cycles is None else cycles
    return asyncio.run(_overhead(host, port, count, limit, round_calls))


_HEADER = ("op", "subject", "calls/s (median)", "µs/call (median)", "min..max",
           "x aiomcache", "CPU µs/call", "CPU µs added")


def is_async(row: OverheadRow) -> bool:
    """Whether ``row`` is one of this module's (they have their own table)."""
    return row.datastore == DATASTORE


def cells(row: OverheadRow) -> tuple[str, ...]:
    """A row of the asyncio table: calls/s is 1e6 over the median µs per call."""
    return (row.operation, row.subject, f"{1e6 / row.median_us:,.0f}", f"{row.median_us:.1f}",
            f"{row.min_us:.1f}..{row.max_us:.1f}", f"{row.ratio:.3f}", f"{row.cpu_us:.1f}",
            f"{row.cpu_added_us:+.1f}")


def header() -> tuple[str, ...]:
    return _HEADER


INTRO = (
    "The asyncio wrapper (`AsyncMemcache`) against aiomcache and emcache: `get` of a "
    "100-byte value from N concurrent tasks and a 10-key `get_many` from one; *pool N* "
    "gives a peer N connections, as the wrapper has, *default* leaves its own (2). "
    "µs/call is a round's elapsed time over its calls (calls/s = 1e6 / it), median over "
    "interleaved rounds (min..max); *x aiomcache* and *CPU µs added* compare each round "
    "with aiomcache given the same connections."
)
