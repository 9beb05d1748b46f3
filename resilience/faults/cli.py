"""``resilience proxy``: run a fault proxy in the foreground.

::

    resilience proxy --upstream 127.0.0.1:11211 --listen 127.0.0.1:22122 \\
        --toxic latency:latency_ms=100,jitter_ms=10 \\
        --toxic blackhole:direction=downstream,probability=0.5 --seed 1 --duration 60

Prints ``listening on HOST:PORT -> UPSTREAM`` once it accepts connections, then runs
until ``--duration`` seconds have passed, or SIGINT/SIGTERM, and prints its counters.
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from dataclasses import asdict

from resilience.faults.proxy import FaultProxy
from resilience.faults.toxics import TOXICS, Toxic, parse_toxic, toxic_fields

__all__ = ["register", "run"]


def _toxic(spec: str) -> Toxic:
    try:
        return parse_toxic(spec)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _kinds_help() -> str:
    lines = []
    for kind in TOXICS:
        fields = ", ".join(f"{k}=<{t.__name__}>" for k, t in toxic_fields(kind).items())
        lines.append(f"  {kind}: {fields}")
    return "toxics and their fields:\n" + "\n".join(lines)


def register(parser: argparse.ArgumentParser) -> None:
    """Add the proxy's options to ``parser``."""
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.epilog = _kinds_help()
    parser.add_argument("--upstream", required=True, metavar="HOST:PORT",
                        help="where to forward (loopback or a namespace of ours)")
    parser.add_argument("--listen", default="127.0.0.1:0", metavar="HOST:PORT",
                        help="loopback address to listen on (default: a free port)")
    parser.add_argument("--toxic", action="append", type=_toxic, default=[],
                        metavar="KIND[:FIELD=VALUE,...]", help="a toxic to apply; repeatable")
    parser.add_argument("--seed", type=int, default=None,
                        help="seed of probabilities and jitter, so a run replays")
    parser.add_argument("--duration", type=float, default=None, metavar="S",
                        help="exit after S seconds (default: until SIGINT/SIGTERM)")


def run(args: argparse.Namespace) -> int:
    """Run the proxy until the duration ends or a signal arrives; 0 on a clean exit."""
    if args.duration is not None and args.duration <= 0:
        print(f"resilience proxy: --duration {args.duration}: must be > 0", file=sys.stderr)
        return 2
    try:
        proxy = FaultProxy(args.upstream, listen=args.listen, seed=args.seed)
    except ValueError as exc:
        print(f"resilience proxy: {exc}", file=sys.stderr)
        return 2
    done = threading.Event()
    # Signals can only be caught on the main thread; elsewhere --duration ends the run.
    on_main = threading.current_thread() is threading.main_thread()
    previous = {s: signal.signal(s, lambda *_: done.set())
                for s in ((signal.SIGINT, signal.SIGTERM) if on_main else ())}
    try:
        try:
            proxy.start()
        except OSError as exc:
            print(f"resilience proxy: cannot listen on {args.listen}: {exc}", file=sys.stderr)
            return 1
        try:
            for toxic in args.toxic:
                proxy.add(toxic)
            print(f"listening on {proxy.host}:{proxy.port} -> "
                  f"{proxy.upstream[0]}:{proxy.upstream[1]}", flush=True)
            for toxic in proxy.toxics:
                print(f"toxic {toxic!r}", flush=True)
            done.wait(args.duration)
        finally:
            proxy.stop()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    counters = " ".join(f"{k}={v}" for k, v in asdict(proxy.counters()).items())
    print(f"counters {counters}", flush=True)
    return 0
