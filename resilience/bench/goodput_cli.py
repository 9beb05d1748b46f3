"""``resilience bench goodput``: its arguments and its run (docs/bench.md#goodput)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

__all__ = ["DEFAULT_OUT", "HELP", "QUICK_OUT", "register", "run"]

HELP = "goodput of a real service while its datastore hangs, and its recovery"
DEFAULT_OUT = Path("benchmarks/results/goodput")
QUICK_OUT = Path("benchmarks/results/goodput-quick")  # not committed


def _floats(value: str) -> tuple[float, ...]:
    try:
        return tuple(float(v) for v in value.split(",") if v.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected comma separated seconds, e.g. 10,300; got {value!r}") from None


def _names(value: str) -> tuple[str, ...]:
    return tuple(v.strip() for v in value.split(",") if v.strip())


def register(parser: argparse.ArgumentParser) -> None:
    """Add the arguments of ``resilience bench goodput``."""
    from resilience.bench.goodput import MODES
    from resilience.bench.goodput_readers import DATASTORES, SUBJECTS

    parser.add_argument("--quick", action="store_true",
                        help="a 5 s outage and shorter phases: under 2 minutes")
    parser.add_argument("--out", type=Path, default=None,
                        help=f"results folder (default {DEFAULT_OUT}; with --quick {QUICK_OUT})")
    parser.add_argument("--datastores", type=_names, default=None,
                        help="comma separated, from: " + ", ".join(DATASTORES)
                        + " (default memcached; only memcached has the async service)")
    parser.add_argument("--modes", type=_names, default=None,
                        help=f"service kinds, comma separated, from: {', '.join(MODES)}")
    parser.add_argument("--outages", type=_floats, default=None,
                        help="outage lengths in seconds, one run each (default 10; "
                        "the committed run: 10,300)")
    parser.add_argument("--subjects", type=_names, default=None,
                        help=f"comma separated, from: {', '.join(SUBJECTS)}")
    parser.add_argument("--healthy", type=float, default=None, help="seconds before the fault")
    parser.add_argument("--healed", type=float, default=None, help="seconds after the heal")
    parser.add_argument("--concurrency", type=int, default=None,
                        help="closed-loop users per subject (default 16)")
    parser.add_argument("--think", type=float, default=None,
                        help="each user's pause between requests, seconds (default 0.1)")


def run(args: argparse.Namespace) -> int:
    """Run, print the Markdown, write the reports; 0 on success, 2 on bad input."""
    from dataclasses import replace

    from resilience.bench.goodput import Settings, run_goodput
    from resilience.bench.goodput_report import markdown, write_all

    settings = Settings.quick() if args.quick else Settings()
    changes = {k: getattr(args, k) for k in
               ("datastores", "modes", "outages", "subjects", "healthy", "healed", "concurrency",
                "think")
               if getattr(args, k) is not None}
    settings = replace(settings, **changes)
    try:
        settings.validate()
    except ValueError as exc:
        print(f"resilience bench goodput: {exc}", file=sys.stderr)
        return 2
    result = run_goodput(settings)
    print(markdown(result))
    out = args.out if args.out is not None else (QUICK_OUT if args.quick else DEFAULT_OUT)
    for path in write_all(result, Path(out)):
        print(f"wrote {path}")
    if not args.quick:  # a full run into the committed folder refreshes the docs
        from resilience.bench.docgen import refresh_after_run

        for doc in refresh_after_run(Path(out) / "results.json"):
            print(f"regenerated {doc}")
    return 0
