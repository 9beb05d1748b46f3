"""The load generator of ``resilience bench goodput``: a separate process, closed loop.

``--concurrency`` workers (users) each send one request, wait for its answer (at most
``--timeout`` seconds, then the request counts as timed out and its connection is
closed), record it, think for ``--think`` seconds (jittered ±50%, so the users do not
march in step) and send the next; from ``--start-at`` until ``--stop-at``
(``time.monotonic()`` values: the clock is system-wide on Linux, so the orchestrator's
phase marks and these records share it) and at most ``--max-requests`` in all. With
``--start-at -1`` it prints ``ready`` once imported and reads ``START STOP`` from stdin
(within 60 s), so the orchestrator can start every load at once however slowly each
process started.

Each request is a fresh HTTP/1.0 connection (the sync service, wsgiref, speaks 1.0).
Records go to ``--out`` as three arrays (see :func:`write_records`): the monotonic time
each request ended, its latency in seconds and its outcome (``OUTCOMES``).
"""

from __future__ import annotations

import argparse
import array
import asyncio
import random
import select
import sys
import time
from pathlib import Path

__all__ = ["OUTCOMES", "main", "read_records", "write_records"]

OUTCOMES = ("hit", "miss", "fallback", "http-error", "timeout", "conn-error")
_CODE = {name: i for i, name in enumerate(OUTCOMES)}
_REQUEST = b"GET /item HTTP/1.0\r\nHost: service\r\n\r\n"


def classify(reply: bytes) -> int:
    """The outcome code of a complete HTTP reply."""
    head, _, _ = reply.partition(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    if not lines[0].startswith((b"HTTP/1.0 200", b"HTTP/1.1 200")):
        return _CODE["http-error"]
    for line in lines[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"x-source":
            return _CODE.get(value.strip().decode("ascii", "replace"), _CODE["http-error"])
    return _CODE["http-error"]


async def _one(host: str, port: int, timeout: float) -> int:
    writer: asyncio.StreamWriter | None = None
    try:
        async with asyncio.timeout(timeout):
            reader, writer = await asyncio.open_connection(host, port)
            writer.write(_REQUEST)
            reply = await reader.read(65536 * 4)
            while chunk := await reader.read(65536):  # until the server closes
                reply += chunk
        return classify(reply)
    except TimeoutError:
        return _CODE["timeout"]
    except OSError:
        return _CODE["conn-error"]
    finally:
        if writer is not None:
            writer.close()


async def run_load(host: str, port: int, *, concurrency: int, timeout: float, think: float,
                   start_at: float, stop_at: float, max_requests: int
                   ) -> tuple[array.array[float], array.array[float], array.array[int]]:
    """Drive the service closed loop; returns (end times, latencies, outcome codes)."""
    ends: array.array[float] = array.array("d")
    lats: array.array[float] = array.array("d")
    codes: array.array[int] = array.array("b")
    await asyncio.sleep(max(0.0, start_at - time.monotonic()))

    async def worker() -> None:
        while len(codes) < max_requests:
            t0 = time.monotonic()
            if t0 >= stop_at:
                return
            code = await _one(host, port, timeout)
            t1 = time.monotonic()
            ends.append(t1)
            lats.append(t1 - t0)
            codes.append(code)
            # A refused connect must not spin the loop, even with no think time.
            pause = think * random.uniform(0.5, 1.5)
            await asyncio.sleep(max(pause, 0.01) if code == _CODE["conn-error"] else pause)

    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return ends, lats, codes


def write_records(path: Path, ends: array.array[float], lats: array.array[float],
                  codes: array.array[int]) -> None:
    """Count (8 bytes), then the end times, latencies (doubles) and codes (bytes)."""
    with open(path, "wb") as f:
        array.array("q", [len(codes)]).tofile(f)
        ends.tofile(f)
        lats.tofile(f)
        codes.tofile(f)


def read_records(path: Path) -> tuple[list[float], list[float], list[int]]:
    """What :func:`write_records` wrote, as lists."""
    with open(path, "rb") as f:
        count = array.array("q")
        count.fromfile(f, 1)
        n = count[0]
        ends, lats, codes = array.array("d"), array.array("d"), array.array("b")
        ends.fromfile(f, n)
        lats.fromfile(f, n)
        codes.fromfile(f, n)
    return ends.tolist(), lats.tolist(), codes.tolist()


def _times_from_stdin(wait: float = 60.0) -> tuple[float, float]:
    print("ready", flush=True)
    if not select.select([sys.stdin], [], [], wait)[0]:
        raise SystemExit(f"goodput_load: no START STOP on stdin within {wait:g} s")
    start, stop = sys.stdin.readline().split()
    return float(start), float(stop)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m resilience.bench.goodput_load")
    parser.add_argument("--target", required=True, help="host:port of the service")
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--timeout", type=float, default=1.0)
    parser.add_argument("--think", type=float, default=0.1)
    parser.add_argument("--start-at", type=float, required=True,
                        help="monotonic start time; -1: say ready, read START STOP on stdin")
    parser.add_argument("--stop-at", type=float, default=-1.0)
    parser.add_argument("--max-requests", type=int, default=5_000_000)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)
    if args.start_at == -1:
        args.start_at, args.stop_at = _times_from_stdin()
    if (args.concurrency < 1 or args.timeout <= 0 or args.think < 0
            or args.stop_at <= args.start_at):
        parser.error("need --concurrency >= 1, --timeout > 0, --think >= 0 and "
                     "--stop-at after --start-at")
    host, _, port = args.target.rpartition(":")
    records = asyncio.run(run_load(host, int(port), concurrency=args.concurrency,
                                   timeout=args.timeout, think=args.think,
                                   start_at=args.start_at,
                                   stop_at=args.stop_at, max_requests=args.max_requests))
    write_records(args.out, *records)
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
