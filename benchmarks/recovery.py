"""Recovery after the heal: from the thaw of a frozen server to the first successful call.

For each client (NSQ, ZooKeeper, Cassandra, Elasticsearch, OpenSearch; memcached is in
docs/breaker.md already), with health probes on and off:

1. start the server's default topology through :mod:`resilience.servers` (a private
   one, in a temporary directory);
2. one thread makes a call every 20 ms through the sync client (default options but a
   100 ms budget per call, ``--timeout``, so the breaker opens within about a second
   and its open interval grows 1, 2, 4 ... s up to 30 s during the outage);
3. freeze the server (SIGSTOP) for ``--outage`` seconds, thaw it, and record the time
   from the thaw to the first call that succeeds (bounded: ``LIMIT`` seconds), and the
   breaker's open interval at the thaw.

Usage (JVM servers under the shared lock)::

    flock /work/wt/jvm.lock python benchmarks/recovery.py --clients cassandra \\
        [--outage 10] [--modes on,off] [--timeout 0.1] [--json FILE]

(From a git worktree, ``PYTHONPATH=.`` so the worktree's package is the one measured.)

Results: benchmarks/results/recovery.json (merged per client, mode and outage) and
its table in docs/breaker.md (written by hand from it).
"""

from __future__ import annotations

import argparse
import datetime
import json
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any

from resilience.errors import ResilienceError
from resilience.servers import Cluster, Server, get_spec

LIMIT = 60.0  # longest wait for the first success after the thaw
PERIOD = 0.02  # one call every 20 ms
DEFAULT_JSON = Path("benchmarks/results/recovery.json")
CLIENTS = ("nsq", "zookeeper", "cassandra", "elasticsearch", "opensearch")

Call = Callable[[], Any]


@contextmanager
def _server(name: str) -> Iterator[Server | Cluster]:
    spec = get_spec(name)
    with tempfile.TemporaryDirectory(prefix=f"recovery-{name}-") as work:
        top = spec.create(Path(work))
        top.start(spec.start_timeout)
        try:
            yield top
        finally:
            top.stop()


def _client(name: str, top: Any, probes: bool,
            timeout: float) -> tuple[Any, Call, str, Server]:
    """(client, one user call, the endpoint whose breaker opens, the server to freeze)."""
    opts: dict[str, Any] = {"environ": {}, "breaker_health_probe": probes, "timeout": timeout}
    if name == "nsq":
        from resilience.clients.nsq import Publisher

        nsqd = top.nsqds[0]
        pub = Publisher([nsqd.tcp_address], **opts)
        return pub, lambda: pub.publish("recovery", b"x"), nsqd.tcp_address, nsqd
    if name == "zookeeper":
        from resilience.clients.zookeeper import ZooKeeper

        zk = ZooKeeper(top.address, **opts)
        return zk, lambda: zk.exists("/"), zk.endpoints[0], top
    if name == "cassandra":
        from resilience.clients.cassandra import Cassandra

        endpoint = f"127.0.0.1:{top.port}"
        db = Cassandra([endpoint], **opts)
        return db, lambda: db.execute("SELECT key FROM system.local"), endpoint, top
    if name in ("elasticsearch", "opensearch"):
        if name == "elasticsearch":
            from resilience.clients.elasticsearch import Elasticsearch as Search
        else:
            from resilience.clients.opensearch import OpenSearch as Search  # type: ignore[assignment]
        es = Search(top.url, **opts)
        return es, lambda: es.health(), es.endpoints[0], top
    raise SystemExit(f"unknown client {name!r}; expected one of {', '.join(CLIENTS)}")


def _calls_until(call: Call, until: float) -> None:
    while time.monotonic() < until:
        began = time.monotonic()
        with suppress(ResilienceError):
            call()
        time.sleep(max(0.0, PERIOD - (time.monotonic() - began)))


def measure(name: str, top: Any, probes: bool, outage: float,
            timeout: float) -> dict[str, Any]:
    client, call, endpoint, server = _client(name, top, probes, timeout)
    try:
        give_up = time.monotonic() + 60.0
        while True:  # connected and answering first (a first connect may take longer)
            try:
                call()
                break
            except ResilienceError:
                if time.monotonic() > give_up:
                    raise
                time.sleep(0.2)
        server.freeze()
        try:
            _calls_until(call, time.monotonic() + outage)
            snap = client.breaker(endpoint).snapshot(time.monotonic())
        finally:
            server.thaw()
        healed = time.monotonic()
        calls = 0
        while time.monotonic() - healed < LIMIT:
            calls += 1
            began = time.monotonic()
            try:
                call()
                took = time.monotonic() - healed
                break
            except ResilienceError:
                time.sleep(max(0.0, PERIOD - (time.monotonic() - began)))
        else:
            took = None
    finally:
        client.close()
    row = {"client": name, "probes": probes, "outage_s": outage, "timeout_s": timeout,
           "state_at_thaw": snap["state"],
           "open_interval_at_thaw_s": round(float(snap.get("open_interval") or 0.0), 2),
           "first_success_s": None if took is None else round(took, 3),
           "calls_after_thaw": calls, "measured_at": datetime.date.today().isoformat()}
    print(json.dumps(row), file=sys.stderr)
    return row


def _merge(path: Path, rows: list[dict[str, Any]]) -> None:
    old = json.loads(path.read_text()) if path.exists() else []
    key = ("client", "probes", "outage_s", "timeout_s")
    fresh = {tuple(r.get(k) for k in key) for r in rows}
    kept = [r for r in old if tuple(r.get(k) for k in key) not in fresh]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(kept + rows, indent=1) + "\n")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    ap.add_argument("--clients", default=",".join(CLIENTS))
    ap.add_argument("--outage", type=float, default=10.0, help="seconds frozen (default 10)")
    ap.add_argument("--modes", default="on,off", help="health probes: on, off or both")
    ap.add_argument("--timeout", type=float, default=0.1, help="budget of one call, s")
    ap.add_argument("--json", type=Path, default=DEFAULT_JSON)
    args = ap.parse_args(argv)
    if not 0 < args.outage <= 600:
        raise SystemExit(f"--outage {args.outage}: expected 0 < seconds <= 600")
    if not 0 < args.timeout <= 10:
        raise SystemExit(f"--timeout {args.timeout}: expected 0 < seconds <= 10")
    modes = [m.strip() for m in args.modes.split(",") if m.strip()]
    if not modes or any(m not in ("on", "off") for m in modes):
        raise SystemExit(f"--modes {args.modes!r}: expected on, off or on,off")
    rows = []
    for name in [c.strip() for c in args.clients.split(",") if c.strip()]:
        with _server(name) as top:
            for mode in modes:
                rows.append(measure(name, top, mode == "on", args.outage, args.timeout))
    _merge(args.json, rows)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
