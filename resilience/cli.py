"""The ``resilience`` command.

Each subcommand lives in the module that owns its subject and is imported only when
that subcommand runs, so ``resilience --help`` stays fast and imports no driver. A
subcommand module provides ``register(parser: argparse.ArgumentParser) -> None`` (adds
its arguments) and ``run(args: argparse.Namespace) -> int`` (returns the exit code).
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

# name -> (module, one-line help)
COMMANDS: dict[str, tuple[str, str]] = {
    "config": ("resilience.config._cli", "print the effective settings and where each came from"),
    "servers": ("resilience.servers.cli", "install, start, stop or list local real servers"),
    "proxy": ("resilience.faults.cli", "run a fault proxy in front of host:port"),
    "bench": ("resilience.bench.cli", "run the failure-latency benchmark (or: bench goodput)"),
    "status": ("resilience.status.cli", "show every circuit breaker of a running service"),
    "control": ("resilience.control.cli", "set, show or clear fleet-wide control in ZooKeeper"),
    "soak": ("resilience.soak.cli", "run seeded faults over every datastore and check invariants"),
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="resilience",
        description="Fail fast instead of hanging: tools of the resilience library.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (_module, help_text) in COMMANDS.items():
        sub.add_parser(name, help=help_text, add_help=False)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] not in COMMANDS:
        parser = build_parser()
        if not args or args[0] in ("-h", "--help"):
            parser.print_help()
            return 0
        parser.error(f"unknown command {args[0]!r}; choose from {', '.join(COMMANDS)}")
    name = args[0]
    module_name, help_text = COMMANDS[name]
    module = importlib.import_module(module_name)
    parser = argparse.ArgumentParser(prog=f"resilience {name}", description=help_text)
    module.register(parser)
    ns = parser.parse_args(args[1:])
    return int(module.run(ns))


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
