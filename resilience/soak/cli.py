"""``resilience soak``: seeded faults over every datastore at once (see docs/soak.md)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

__all__ = ["register", "run"]


def register(parser: argparse.ArgumentParser) -> None:
    """Add the arguments of ``resilience soak``."""
    from resilience.soak.targets import DATASTORES, FAULTS

    parser.add_argument("--seconds", type=float, default=60.0,
                        help="length of the run, servers' start not included (default 60)")
    parser.add_argument("--seed", type=int, default=1,
                        help="seed of the fault schedules; the same seed replays them")
    parser.add_argument("--datastores", default=",".join(DATASTORES),
                        help=f"comma separated (default all): {', '.join(DATASTORES)}")
    parser.add_argument("--faults", default=",".join(FAULTS),
                        help=f"comma separated (default all): {', '.join(FAULTS)}")
    parser.add_argument("--budget-ms", type=float, default=100.0,
                        help="deadline of every call (default 100)")
    parser.add_argument("--slack-ms", type=float, default=45.0,
                        help="scheduling slack on top of deadline + 5 ms (default 45)")
    parser.add_argument("--recovery", type=float, default=1.0,
                        help="seconds for every breaker to close after the last heal")
    parser.add_argument("--strict-recovery", action="store_true",
                        help="also fail on a missed recovery of a client with no health probe")
    parser.add_argument("--threads", type=int, default=2, help="sync threads per datastore")
    parser.add_argument("--pace-ms", type=float, default=10.0,
                        help="pause between two calls of one thread or task (default 10)")
    parser.add_argument("--out", type=Path, default=None,
                        help="write soak.json and soak.md into this folder")


def _split(value: str) -> tuple[str, ...]:
    return tuple(v.strip() for v in value.split(",") if v.strip())


def run(args: argparse.Namespace) -> int:
    """Run the soak; 0 when no invariant was violated, 1 when one was, 2 on bad input."""
    from resilience.soak.config import SoakConfig
    from resilience.soak.report import markdown, write
    from resilience.soak.run import run_soak

    try:
        config = SoakConfig(seconds=args.seconds, seed=args.seed,
                            datastores=_split(args.datastores), faults=_split(args.faults),
                            budget=args.budget_ms / 1000, slack=args.slack_ms / 1000,
                            recovery=args.recovery, strict_recovery=args.strict_recovery,
                            threads=args.threads, pace=args.pace_ms / 1000)
    except ValueError as exc:
        print(f"resilience soak: {exc}", file=sys.stderr)
        return 2
    import logging

    # kazoo logs every dropped connection and reconnect: the faults cause thousands.
    for noisy in ("kazoo", "cassandra", "elastic_transport", "opensearch"):
        logging.getLogger(noisy).setLevel(logging.CRITICAL)
    result = run_soak(config, log=lambda line: print(line, flush=True))
    print(markdown(result))
    if args.out is not None:
        for path in write(result, args.out):
            print(f"wrote {path}")
    if not result["ok"]:
        print(f"soak FAILED: {result['violation_count']} violations; replay with: "
              f"{result['replay']}", file=sys.stderr)
        return 1
    return 0
