"""``resilience status --url URL``: the status page of a running service, in a terminal.

Reads the service's ``status.json`` (the URL of the page or of the JSON itself) and
prints one line per breaker; ``--watch N`` redraws every N seconds; ``--json`` prints the
document as it came. ``--force open|closed|reset --service S --endpoint E`` forces a
breaker, with the token from ``--token`` or ``RESILIENCE_STATUS_TOKEN``. Every request is
bounded by ``--timeout``. Exit code 0; 1 when the service cannot be reached or refuses;
2 for a bad argument.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import urllib.error
import urllib.request
from typing import Any

from resilience.status._app import TOKEN_VARIABLE
from resilience.status._collect import FORCE_ACTIONS

__all__ = ["format_table", "register", "run"]


def register(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--url", required=True,
                        help="the status page (or its status.json) of a running service")
    parser.add_argument("--json", action="store_true", help="print the JSON document")
    parser.add_argument("--watch", type=float, metavar="SECONDS",
                        help="redraw every SECONDS until interrupted (or --count times)")
    parser.add_argument("--count", type=int, default=0,
                        help="with --watch: stop after this many draws (0: no limit)")
    parser.add_argument("--timeout", type=float, default=5.0,
                        help="seconds to wait for the service (default 5)")
    parser.add_argument("--force", choices=FORCE_ACTIONS,
                        help="force a breaker (needs --service, --endpoint and a token)")
    parser.add_argument("--service", help="with --force: the breaker's service")
    parser.add_argument("--endpoint", help="with --force: the breaker's endpoint, host:port")
    parser.add_argument("--token", help=f"with --force: the token (default ${TOKEN_VARIABLE})")
    parser.add_argument("--operator", default=os.environ.get("USER", ""),
                        help="with --force: your name, for the service's log")


def _base(url: str) -> str:
    url = url.rstrip("/")
    return url[: -len("/status.json")] if url.endswith("/status.json") else url


def _request(req: urllib.request.Request, timeout: float) -> tuple[int, Any]:
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as err:
        try:
            return err.code, json.loads(err.read())
        except ValueError:
            return err.code, {"error": err.reason}


def format_table(doc: dict[str, Any]) -> str:
    """One line per breaker of a ``status.json`` document."""
    head = ("SERVICE", "ENDPOINT", "STATE", "FAIL", "SLOW", "CALLS", "OPEN FOR",
            "RETRY BUDGET", "BULKHEAD")
    rows = [head]
    for svc in doc["services"]:
        budget = svc["retry_budget"]
        if svc.get("error"):
            rows.append((svc["service"], "-", "ERROR", svc["error"], "", "", "", "", ""))
        for b in svc["breakers"]:
            bulk = b["bulkhead"]
            rows.append((
                svc["service"], b["endpoint"], b["state"].upper(),
                f"{100 * b['failure_rate']:.0f}%", f"{100 * b['slow_call_rate']:.0f}%",
                f"{b['calls']}/{b['minimum_calls']}",
                f"{b['retry_after']:.1f}s" if b["open_until"] is not None else "-",
                "-" if budget is None else f"{budget['balance']:.1f} ({budget['refused']} refused)",
                "-" if bulk is None else f"{bulk['in_use']}/{bulk['max_concurrent']}",
            ))
    widths = [max(len(r[i]) for r in rows) for i in range(len(head))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip()
             for r in rows]
    if len(rows) == 1:
        lines.append("(no breakers: the service has no open client)")
    return "\n".join(lines)


def _force(args: argparse.Namespace, base: str) -> int:
    token = args.token or os.environ.get(TOKEN_VARIABLE)
    if not (args.service and args.endpoint and token):
        print(f"resilience status: --force needs --service, --endpoint and a token"
              f" (--token or ${TOKEN_VARIABLE})", file=sys.stderr)
        return 1
    body = json.dumps({"service": args.service, "endpoint": args.endpoint,
                       "action": args.force, "operator": args.operator}).encode()
    req = urllib.request.Request(base + "/force", data=body, method="POST", headers={
        "Content-Type": "application/json", "Authorization": f"Bearer {token}"})
    code, doc = _request(req, args.timeout)
    if code != 200:
        print(f"resilience status: refused ({code}): {doc.get('error')}", file=sys.stderr)
        return 1
    print(f"forced {args.service} {args.endpoint} {args.force}"
          f" ({doc['forced']} breaker{'' if doc['forced'] == 1 else 's'})")
    return 0


def _bad_number(args: argparse.Namespace) -> str | None:
    if args.watch is not None and not args.watch > 0:
        return f"--watch {args.watch}: expected seconds > 0"
    if not args.timeout > 0:
        return f"--timeout {args.timeout}: expected seconds > 0"
    if args.count < 0:
        return f"--count {args.count}: expected 0 (no limit) or more"
    return None


def run(args: argparse.Namespace) -> int:
    problem = _bad_number(args)
    if problem:
        print(f"resilience status: {problem}", file=sys.stderr)
        return 2
    base = _base(args.url)
    try:
        if args.force:
            return _force(args, base)
        draws = 0
        while True:
            code, doc = _request(urllib.request.Request(base + "/status.json"), args.timeout)
            if code != 200:
                print(f"resilience status: {base}/status.json answered {code}:"
                      f" {doc.get('error')}", file=sys.stderr)
                return 1
            out = json.dumps(doc, indent=2) if args.json else format_table(doc)
            if args.watch and sys.stdout.isatty():
                print("\x1b[H\x1b[2J", end="")
            print(out, flush=True)
            draws += 1
            if not args.watch or (args.count and draws >= args.count):
                return 0
            time.sleep(args.watch)
    except (urllib.error.URLError, OSError, ValueError) as exc:
        print(f"resilience status: cannot read {base}/status.json: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 0
