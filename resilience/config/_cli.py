"""``resilience config [client] [--name NAME] [--json | --markdown]``.

Prints the effective settings of one client (all registered clients when none is given)
as resolved from the environment right now: key, value (durations in milliseconds, as
they are written in the environment), the variable that sets it, and where the value
came from (a variable or ``default``). Secrets are shown as ``***``.

Exit codes: 0 when every setting is valid; 2 with the ConfigError message (no
traceback) when one is not, or when the client is unknown.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

__all__ = ["register", "run"]


def register(parser: argparse.ArgumentParser) -> None:
    """Add the arguments of ``resilience config`` to ``parser``."""
    parser.add_argument("client", nargs="?", help="client to show (default: every client)")
    parser.add_argument("--name", help="named instance: RESILIENCE_<CLIENT>_<NAME>_<KEY>")
    out = parser.add_mutually_exclusive_group()
    out.add_argument("--json", action="store_true", help="print JSON instead of a table")
    out.add_argument(
        "--markdown", action="store_true",
        help="print the option table of docs/configuration.md (built-in defaults only)",
    )


def _table(rows: list[tuple[str, str, str, str]]) -> str:
    widths = [max(len(r[i]) for r in rows) for i in range(4)]
    return "\n".join(
        "  ".join(cell.ljust(w) for cell, w in zip(r, widths, strict=True)).rstrip()
        for r in rows
    )


def _json_value(setting: Any) -> Any:
    if setting.key.secret:
        return "***"
    value = setting.value
    return list(value) if isinstance(value, tuple) else value


def run(args: argparse.Namespace) -> int:
    """Print the settings; returns the exit code (0, or 2 on a configuration error)."""
    from resilience import config
    from resilience.errors import ConfigError

    for problem in config.load_clients():
        print(f"resilience config: warning: could not load {problem}", file=sys.stderr)
    if args.markdown:
        sys.stdout.write(config.option_table_markdown())
        return 0
    if args.client is not None and args.client not in config.CLIENTS:
        known = ", ".join(sorted(config.CLIENTS))
        print(f"resilience config: unknown client {args.client!r}; choose from {known}",
              file=sys.stderr)
        return 2
    names = [args.client] if args.client else sorted(config.CLIENTS)
    try:
        results = [config.resolve(config.CLIENTS[c], client=c, name=args.name) for c in names]
    except ConfigError as exc:
        print(f"resilience config: {exc}", file=sys.stderr)
        return 2
    if args.json:
        doc = {
            r.client: {
                "name": r.name,
                "settings": [
                    {"key": s.key.env, "argument": s.key.arg, "value": _json_value(s),
                     "env_value": s.shown, "env": s.env_var, "source": s.source}
                    for s in r.settings
                ],
            }
            for r in results
        }
        print(json.dumps(doc, indent=2))
        return 0
    blocks = []
    for r in results:
        title = r.client + (f" (instance {r.name})" if r.name else "")
        rows = [("KEY", "VALUE", "ENV VAR", "SOURCE")]
        rows += [(s.key.env, s.shown, s.env_var, s.source) for s in r.settings]
        blocks.append(f"{title}\n{_table(rows)}")
    print("\n\n".join(blocks))
    return 0
