"""Install, start and memory figures of the real servers, through the harness.

Usage::

    python benchmarks/servers.py [--quick] [--servers memcached,zookeeper,nsq]
                                 [--json FILE] [--markdown FILE]

For each server (default: all six) and each topology shown in the README, starts it
``starts`` times (3; 1 with ``--quick``) through :mod:`resilience.servers` and records
the time from spawn to the first answered readiness probe (for a topology: from the
start call until every member answers) and every member's RSS one second after ready
(0.2 s with ``--quick``). A server that is not installed is installed first and that
install is timed; an installed one cannot be, so its install figure is carried over
from the previous result file with the date it was measured (``install.status`` is
``"recorded"``). Servers not selected keep their previous row as it was. Every start is
bounded by the server's own start timeout.

A full run writing the committed file regenerates the README (``scripts/gen_readme.py``).
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import socket
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from resilience.bench.docgen import SOURCES, refresh_after_run
from resilience.bench.machine import cpu_model
from resilience.servers import Cluster, Server, get_spec

ALL = ("memcached", "zookeeper", "nsq", "cassandra", "elasticsearch", "opensearch")
DEFAULT_JSON = Path(SOURCES["servers"])
QUICK_JSON = Path("benchmarks/results/servers-quick.json")  # a smoke run: not committed

# How the README names each server (``{v}``: the version the server reports) and
# where it comes from.
LABELS = {
    "memcached": ("memcached {v}", "apt"),
    "zookeeper": ("ZooKeeper {v} (standalone; 3-node ensemble)", "apt, JVM started directly"),
    "nsq": ("nsqd + nsqlookupd {v} (2 nsqd + 1 lookupd)", "built from the Go module proxy"),
    "cassandra": ("Cassandra {v} on Java 17 (also an N-node ring)", "Maven Central jars"),
    "elasticsearch": ("Elasticsearch {v} (integ-test zip)", "Maven Central"),
    "opensearch": ("OpenSearch {v} (integ-test zip)", "Maven Central"),
}

Topology = Server | Cluster


def topologies(name: str) -> list[tuple[str, Callable[[Path], Topology]]]:
    """(label, factory) of each topology the README shows for ``name``."""
    if name == "zookeeper":
        from resilience.servers.zookeeper import ensemble

        return [("standalone", get_spec(name).create),
                ("3-node ensemble", lambda d: ensemble(d, 3))]
    return [("default", get_spec(name).create)]


def version(name: str, top: Topology) -> str | None:
    """The version the running server reports, or its module's VERSION, or None."""
    first = top[0] if isinstance(top, Cluster) else top
    try:
        if name == "memcached":
            with socket.create_connection((first.host, first.port), timeout=2.0) as s:
                s.settimeout(2.0)
                s.sendall(b"version\r\n")
                return s.recv(64).decode().split()[1]
        if name == "zookeeper":
            from resilience.servers.zookeeper import four_letter

            line = four_letter(first.host, first.port, "srvr", 2.0).splitlines()[0]
            return line.split(":", 1)[1].strip().split("-")[0]
    except (OSError, IndexError, UnicodeDecodeError):
        return None
    module = sys.modules.get(type(first).__module__)
    found = getattr(module, "VERSION", None)
    return found if isinstance(found, str) else None


def rss_mb(top: Topology) -> list[float]:
    members = list(top) if isinstance(top, Cluster) else [top]
    return [round((m.rss_bytes() or 0) / 2**20, 1) for m in members]


def measure(name: str, starts: int, settle: float) -> dict[str, Any]:
    """Start every topology of ``name`` ``starts`` times; the measured row."""
    spec = get_spec(name)
    install: dict[str, Any] | None = None
    if not spec.is_installed():
        t = time.monotonic()
        print(f"{name}: installing: {spec.install()}", file=sys.stderr)
        install = {"status": "measured", "seconds": round(time.monotonic() - t, 1),
                   "measured_at": datetime.date.today().isoformat()}
    found: str | None = None
    tops = []
    for label, factory in topologies(name):
        times: list[float] = []
        rss: list[list[float]] = []
        for i in range(starts):
            with tempfile.TemporaryDirectory(prefix=f"bench-{name}-") as work:
                top = factory(Path(work))
                t = time.monotonic()
                top.start(spec.start_timeout)
                try:
                    took = time.monotonic() - t
                    if isinstance(top, Server) and top.ready_after is not None:
                        took = top.ready_after  # spawn to first answered probe
                    times.append(round(took, 3))
                    time.sleep(settle)  # RSS once start-up allocations have settled
                    rss.append(rss_mb(top))
                    found = found or version(name, top)
                finally:
                    top.stop()
            print(f"{name} {label} start {i + 1}/{starts}: {times[-1]:.3f} s,"
                  f" RSS {rss[-1]} MB", file=sys.stderr)
        per_member = [round(statistics.median(col), 1) for col in zip(*rss, strict=True)]
        tops.append({"name": label, "start_s": times, "rss_mb": per_member})
    template, origin = LABELS[name]
    row: dict[str, Any] = {"name": name, "label": template.format(v=found or "?"),
                           "from": origin, "status": "measured",
                           "measured_at": datetime.date.today().isoformat(),
                           "topologies": tops}
    if install is not None:
        row["install"] = install
    return row


def machine() -> dict[str, Any]:
    return {"cpu": cpu_model(), "cores": os.cpu_count(), "python": platform.python_version(),
            "kernel": platform.release(),
            "load_average": [round(x, 2) for x in os.getloadavg()]}


def markdown(result: dict[str, Any]) -> str:
    """The full report: every topology, every start, every member's RSS."""
    from resilience.bench.sections import servers_table

    m = result["machine"]
    lines = ["# Real servers: install, start, memory", "",
             f"Machine: {m['cpu']}, {m['cores']} cores, Linux {m['kernel']}, CPython"
             f" {m['python']}; load average at start {m['load_average']}.",
             "Produced by `python benchmarks/servers.py` (the servers measured in this run:"
             f" {', '.join(result['measured']) or 'none'}).", "", servers_table(result).rstrip(),
             "", "| server | topology | starts (s) | RSS per member (MB) | measured |",
             "|---|---|---|---|---|"]
    for row in result["servers"]:
        for t in row.get("topologies", []):
            lines.append(f"| {row['name']} | {t['name']} | {', '.join(map(str, t['start_s']))}"
                         f" | {', '.join(map(str, t['rss_mb']))} | {row['measured_at']} |")
        if row["status"] == "recorded":
            lines.append(f"| {row['name']} | recorded | {row['start_shown']} |"
                         f" {row['memory_shown']} | {row['measured_at']}: {row['note']} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="one start each, shorter settle")
    ap.add_argument("--servers", default=",".join(ALL), help="comma separated, from: "
                    + ", ".join(ALL))
    ap.add_argument("--json", type=Path, default=None,
                    help=f"result file (default {DEFAULT_JSON}; with --quick {QUICK_JSON})")
    ap.add_argument("--markdown", type=Path, default=None,
                    help="report (default: the JSON path with .md)")
    args = ap.parse_args(argv)
    names = [n.strip() for n in args.servers.split(",") if n.strip()]
    unknown = sorted(set(names) - set(ALL))
    if unknown:
        ap.error(f"unknown servers {unknown}; known: {', '.join(ALL)}")
    out: Path = args.json or (QUICK_JSON if args.quick else DEFAULT_JSON)
    # Carried-over rows come from the output file, else from the committed one.
    source = out if out.exists() else DEFAULT_JSON
    old: dict[str, Any] = {}
    if source.exists():
        old = json.loads(source.read_text(encoding="utf-8"))
    rows = {r["name"]: r for r in old.get("servers", [])}
    starts = 1 if args.quick else 3
    mach = machine()
    for name in names:
        row = measure(name, starts, 0.2 if args.quick else 1.0)
        if "install" not in row:
            if name not in rows:
                raise SystemExit(f"{name} is installed and {source} has no install figure"
                                 " to carry over: measure it on a machine without it")
            row["install"] = rows[name]["install"]
        rows[name] = row
    result = {"machine": mach, "quick": args.quick, "starts": starts, "measured": names,
              "servers": [rows[n] for n in ALL if n in rows]}
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    md = args.markdown or out.with_suffix(".md")
    md.write_text(markdown(result), encoding="utf-8")
    print(f"wrote {out} and {md}", file=sys.stderr)
    if not args.quick:
        for changed in refresh_after_run(out):
            print(f"regenerated {changed}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
