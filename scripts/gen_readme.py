"""Rewrite every generated section of README.md and docs/ from the committed results.

Run after changing an option or a file in benchmarks/results/ (the full runs of the
benchmarks call it themselves): ``.venv/bin/python scripts/gen_readme.py``. With
``--check`` it only says which files differ and exits 1 if any do. The sections, the
files that hold them and the result files behind them are listed in
``resilience/bench/docgen.py``; tests/test_readme.py fails while a file differs.
"""

from __future__ import annotations

import argparse
import pathlib
import sys

from resilience.bench.docgen import FILES, expected, update

ROOT = pathlib.Path(__file__).resolve().parent.parent


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--check", action="store_true", help="change nothing; exit 1 on a difference")
    args = ap.parse_args(argv)
    if args.check:
        cache: dict[str, str] = {}
        stale = [f for f in FILES if expected(ROOT, f, cache) != (ROOT / f).read_text()]
        for f in stale:
            print(f"out of date: {f}")
        return 1 if stale else 0
    for f in update(ROOT):
        print(f"updated {f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
