"""``resilience bench``: the failure-latency benchmark, and ``resilience bench goodput``
(see docs/bench.md)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

__all__ = ["register", "run"]

DEFAULT_OUT = Path("benchmarks/results/failure-latency")
# A --quick run is a smoke run: it must not overwrite the committed full result.
QUICK_OUT = Path("benchmarks/results/failure-latency-quick")


def register(parser: argparse.ArgumentParser) -> None:
    """Add the arguments of ``resilience bench``."""
    from resilience.bench.plugin import DATASTORES
    from resilience.bench.scenarios import SCENARIOS

    parser.add_argument("--quick", action="store_true",
                        help="fewer calls, 1.5 s cap: under a minute")
    parser.add_argument("--out", type=Path, default=None,
                        help=f"results folder (default {DEFAULT_OUT}; with --quick {QUICK_OUT})")
    parser.add_argument("--datastores", default="memcached",
                        help=f"comma separated, from: {', '.join(DATASTORES)}")
    parser.add_argument("--faults", default="",
                        help="comma separated fault ids (default all): "
                        + ", ".join(s.id for s in SCENARIOS))
    parser.add_argument("--no-overhead", action="store_true",
                        help="skip the healthy-path overhead measurement")
    jobs = parser.add_subparsers(dest="job", metavar="[JOB]",
                                 help="another benchmark instead of failure latency")
    from resilience.bench import goodput_cli

    goodput_cli.register(jobs.add_parser("goodput", help=goodput_cli.HELP,
                                         description=goodput_cli.HELP))
    parser.add_argument("--hedging", action="store_true",
                        help="instead: p99 of reads with and without hedging under a slow "
                        "node and slow connections (benchmarks/results/hedging; --datastores "
                        "memcached,elasticsearch,opensearch,cassandra; the rows of the others "
                        "are kept)")


def output_dir(args: argparse.Namespace) -> Path:
    """``--out``, else the committed folder for a full run and its own for ``--quick``."""
    if args.out is not None:
        return Path(args.out)
    return QUICK_OUT if args.quick else DEFAULT_OUT


def _split(value: str) -> list[str]:
    return [v.strip() for v in value.split(",") if v.strip()]


def run(args: argparse.Namespace) -> int:
    """Run the benchmark, print the table, write the reports; 0 on success, 2 on bad input."""
    if getattr(args, "job", None) == "goodput":
        from resilience.bench import goodput_cli

        return goodput_cli.run(args)
    if args.hedging:
        from resilience.bench.hedging import OUT, markdown, run_hedging

        # A --quick run is a smoke run: its own folder, never the committed one.
        out_dir = Path(args.out) if args.out is not None else (
            OUT.with_name("hedging-quick") if args.quick else OUT)
        try:
            hedged = run_hedging(out_dir, calls=100 if args.quick else 500,
                                 datastores=tuple(_split(args.datastores)))
        except ValueError as exc:
            print(f"resilience bench: {exc}", file=sys.stderr)
            return 2
        print(markdown(hedged))
        print(f"wrote {out_dir / 'results.md'}")
        return 0
    from resilience.bench.report import table, write_all
    from resilience.bench.suite import Settings, run_suite

    settings = Settings.quick() if args.quick else Settings()
    try:
        result = run_suite(_split(args.datastores), _split(args.faults) or None, settings,
                           overhead=not args.no_overhead)
    except ValueError as exc:
        print(f"resilience bench: {exc}", file=sys.stderr)
        return 2
    print(table(result))
    out = output_dir(args)
    for path in write_all(result, out):
        print(f"wrote {path}")
    if not args.quick:  # a full run into the committed folder refreshes README and docs
        from resilience.bench.docgen import refresh_after_run

        for doc in refresh_after_run(out / "results.json"):
            print(f"regenerated {doc}")
    return 0
