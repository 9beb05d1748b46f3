"""``resilience servers install|start|stop|status [NAME...]``.

``install`` gets servers onto this machine (idempotent; what CI and scripts/test call).
``start`` runs them in the background on free loopback ports for your own tests or the
benchmarks and records pids and ports in ``$RESILIENCE_HOME/run/state.json``, so
``status`` and ``stop`` work from another shell. ``all`` (the default) means every
registered server; with ``install all`` a server whose harness module is absent from this
version is reported and skipped.
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import json
import shutil
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from resilience.servers._base import (
    SERVERS,
    ServerError,
    ServerSpec,
    get_spec,
    process_start_time,
    read_rss_bytes,
    stop_group,
)
from resilience.servers.install import home

__all__ = ["register", "run"]


def register(parser: argparse.ArgumentParser) -> None:
    """Add the ``servers`` subcommands to ``parser``."""
    sub = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    helps = {
        "install": "install servers (idempotent, cached); what CI runs",
        "start": "start servers in the background on free loopback ports",
        "stop": "stop servers started with `start`",
        "status": "show what is installed and running",
    }
    for action, text in helps.items():
        p = sub.add_parser(action, help=text, description=text)
        p.add_argument("names", nargs="*", default=["all"],
                       help=f"'all' (default) or any of: {', '.join(SERVERS)}")  # fmt: skip
        if action in ("start", "status"):
            p.add_argument("--json", action="store_true", help="print JSON (for scripts)")
        if action == "start":
            p.add_argument("--timeout", type=float, default=None,
                           help="seconds each server may take to become ready")  # fmt: skip


def run(args: argparse.Namespace) -> int:
    """Run one ``servers`` action; returns the exit code."""
    try:
        names = expand(list(args.names))
    except ValueError as exc:
        print(f"resilience servers: {exc}", file=sys.stderr)
        return 2
    action = {"install": _install, "start": _start, "stop": _stop, "status": _status}
    return action[args.action](names, args)


def expand(names: list[str]) -> list[str]:
    """``all`` -> every registered name; unknown names raise ValueError listing known ones."""
    out: list[str] = []
    for name in names or ["all"]:
        for n in SERVERS if name == "all" else [name]:
            if n not in SERVERS:
                raise ValueError(f"unknown server {n!r}; known servers: all, {', '.join(SERVERS)}")
            if n not in out:
                out.append(n)
    return out


def _spec_or_none(name: str, explicit: bool) -> ServerSpec | None:
    try:
        return get_spec(name)
    except ServerError as exc:
        if explicit:
            raise
        print(f"{name}: skipped ({exc.problem})")
        return None


def _install(names: list[str], args: argparse.Namespace) -> int:
    explicit = args.names != ["all"]
    failed = []
    t_all = time.monotonic()
    for name in names:
        t0 = time.monotonic()
        try:
            spec = _spec_or_none(name, explicit)
            if spec is None:
                continue
            print(f"{name}: installing ...", flush=True)
            what = spec.install()
            print(f"{name}: {what} ({time.monotonic() - t0:.1f} s)", flush=True)
        except ServerError as exc:
            failed.append(name)
            print(f"{name}: FAILED after {time.monotonic() - t0:.1f} s\n{exc}", file=sys.stderr)
    print(
        f"install: {len(names) - len(failed)}/{len(names)} ok in {time.monotonic() - t_all:.1f} s"
    )
    return 1 if failed else 0


# --- state of servers started in the background -------------------------------------------
def _run_dir() -> Path:
    path = home() / "run"
    path.mkdir(parents=True, exist_ok=True)
    return path


@contextlib.contextmanager
def _state() -> Iterator[dict[str, Any]]:
    """The state file's content, under an exclusive lock; written back on exit."""
    path = _run_dir() / "state.json"
    with (_run_dir() / "state.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            state: dict[str, Any] = json.loads(path.read_text()) if path.exists() else {}
        except ValueError:
            state = {}  # a damaged state file only means we know of no running server
        yield state
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(state, indent=2, sort_keys=True))
        tmp.replace(path)


def _alive(member: dict[str, Any]) -> bool:
    """The recorded process still runs (same pid *and* start time: no pid reuse)."""
    pid = member.get("pid")
    return pid is not None and process_start_time(pid) == member.get("start_time")


def _start(names: list[str], args: argparse.Namespace) -> int:
    explicit = args.names != ["all"]
    rc = 0
    with _state() as state:
        for name in names:
            entry = state.get(name)
            if entry and all(_alive(m) for m in entry["members"]):
                print(f"{name}: already running")
                continue
            if entry:  # partly dead: clean up what is left before starting afresh
                _stop_entry(entry)
            try:
                spec = _spec_or_none(name, explicit)
                if spec is None:
                    continue
                if not spec.is_installed() and not explicit:
                    print(
                        f"{name}: skipped (not installed; run: resilience servers install {name})"
                    )
                    continue
                work = _run_dir() / name
                shutil.rmtree(work, ignore_errors=True)
                server = spec.create(work)
                t0 = time.monotonic()
                server.start(args.timeout or spec.start_timeout)
                members = server.describe()
                state[name] = {"members": members if isinstance(members, list) else [members],
                               "ready_s": round(time.monotonic() - t0, 3)}  # fmt: skip
                print(f"{name}: started in {time.monotonic() - t0:.2f} s")
            except ServerError as exc:
                rc = 1
                print(f"{name}: FAILED\n{exc}", file=sys.stderr)
        _print_status({n: state[n] for n in names if n in state}, as_json=args.json)
    return rc


def _stop_entry(entry: dict[str, Any]) -> None:
    for member in entry["members"]:
        if _alive(member):
            stop_group(member["pid"], 10.0)


def _stop(names: list[str], args: argparse.Namespace) -> int:
    with _state() as state:
        for name in names:
            entry = state.pop(name, None)
            if entry is None:
                if args.names != ["all"]:
                    print(f"{name}: not started by `resilience servers start`")
                continue
            _stop_entry(entry)
            print(f"{name}: stopped")
    return 0


def _status(names: list[str], args: argparse.Namespace) -> int:
    with _state() as state:
        _print_status({n: state.get(n) for n in names}, as_json=args.json, show_installed=True)
    return 0


def _print_status(
    entries: dict[str, Any], *, as_json: bool = False, show_installed: bool = False
) -> None:
    report: dict[str, Any] = {}
    for name, entry in entries.items():
        row: dict[str, Any] = {"running": [], "dead": []}
        if show_installed:
            try:
                row["installed"] = get_spec(name).is_installed()
            except ServerError as exc:
                row["installed"] = None
                row["note"] = exc.problem
        for member in (entry or {}).get("members", []):
            alive = _alive(member)
            rss = read_rss_bytes(member["pid"]) if alive else None
            item = {k: member[k] for k in ("name", "address", "ports", "pid", "log_path")}
            item["rss_mb"] = round(rss / 2**20, 1) if rss else None
            row["running" if alive else "dead"].append(item)
        report[name] = row
    if as_json:
        print(json.dumps(report, indent=2))
        return
    for name, row in report.items():
        inst = row.get("installed")
        head = name if inst is None and "installed" not in row else (
            f"{name} ({'installed' if inst else row.get('note', 'not installed')})")  # fmt: skip
        if not row["running"] and not row["dead"]:
            print(f"{head}: not running")
        for item in row["running"]:
            ports = " ".join(f"{k}={v}" for k, v in item["ports"].items())
            print(
                f"{head}: {item['name']} running {ports} pid={item['pid']} rss={item['rss_mb']} MB"
            )
        for item in row["dead"]:
            print(f"{head}: {item['name']} DEAD (see {item['log_path']})")
