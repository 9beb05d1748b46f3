"""Instructions a healthy call costs, counted with callgrind: the raw driver, the driver
behind pybreaker, and the wrapper. memcached: `get` and `set` (pymemcache); Cassandra: a
prepared single-row SELECT (cassandra-driver), whole and with no I/O (the caller's side
alone, which repeats exactly; see _cassandra_no_io); Elasticsearch and OpenSearch: `get` and
`search` of one document (elasticsearch-py, opensearch-py; the raw clients with retries
off and the same 1 s timeout, as in `resilience bench`).

Timing the client's CPU on a loaded 2-core machine is noisy (docs/bench.md); counting
the instructions the calling process executes is exact and does not depend on load.
Each subject runs in its own interpreter under ``valgrind --tool=callgrind`` with
instrumentation off until its measured loop: a warm-up, then N calls between two
callgrind client requests (a ten-line C helper compiled here with ``cc``), so start-up,
connecting and the warm-up are never counted, and the count is the loop's alone. Every
thread of the process counts (cassandra-driver decodes replies on its reactor thread).
Kernel work (the syscalls, the server) is not counted: this is the client-side Python
and C the call runs. The raw figure includes the loop's own step (about 0.9k).

Usage: python benchmarks/instructions.py [--datastores memcached,cassandra,...]
       [--calls N] [--repeat R] [--json FILE] [--markdown FILE]
Needs valgrind and a C compiler (``apt-get install valgrind gcc``); the servers come from
the harness. Every child is bounded (TIMEOUT seconds).
"""

from __future__ import annotations

import argparse
import ctypes
import json
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

SUBJECTS = ("raw", "pybreaker", "wrapper")
OPS: dict[str, tuple[str, ...]] = {"memcached": ("get", "set"),
                                   "cassandra": ("prepared select", "select, no I/O"),
                                   "elasticsearch": ("get", "search"),
                                   "opensearch": ("get", "search")}
DRIVERS = {"memcached": "pymemcache", "cassandra": "cassandra-driver",
           "elasticsearch": "elasticsearch-py", "opensearch": "opensearch-py"}
TIMEOUT = 600.0
VALUE = b"v" * 100
PREPARED = "SELECT v FROM bench.kv WHERE k = ?"  # the row resilience.bench.cassandra sets up
HELPER_ENV = "RESILIENCE_INSTRUCTIONS_HELPER"
HELPER_C = """#include <valgrind/callgrind.h>
void cg_start(void) { CALLGRIND_START_INSTRUMENTATION; }
void cg_stop(void) { CALLGRIND_STOP_INSTRUMENTATION; }
"""


def _memcached(subject: str, op: str, port: int) -> Callable[[], Any]:
    from pymemcache.client.base import Client

    raw = Client(("127.0.0.1", port), timeout=1.0, connect_timeout=1.0, no_delay=True)
    get: Callable[[], Any]
    put: Callable[[], Any]
    if subject == "raw":
        get, put = (lambda: raw.get("bench:key")), (
            lambda: raw.set("bench:key", VALUE, noreply=False))
    elif subject == "pybreaker":
        import pybreaker

        breaker = pybreaker.CircuitBreaker()
        get, put = (lambda: breaker.call(raw.get, "bench:key")), (
            lambda: breaker.call(raw.set, "bench:key", VALUE, noreply=False))
    else:
        from resilience.clients.memcache import Memcache

        cache = Memcache([f"127.0.0.1:{port}"], environ={}, timeout=1.0)
        get, put = (lambda: cache.get("bench:key")), (lambda: cache.set("bench:key", VALUE))
    put()
    if get() != VALUE:
        raise RuntimeError(f"{subject}: get did not read the value back")
    return get if op == "get" else put


def _cassandra(subject: str, port: int) -> Callable[[], Any]:
    if subject == "wrapper":
        from resilience.clients.cassandra import Cassandra

        # The budget of the driver's default request timeout (10 s), as the raw subjects
        # have: under valgrind a call is ~50x slower, and a tight budget would time out
        # on a busy machine (the budget does not change the count).
        db = Cassandra([f"127.0.0.1:{port}"], environ={}, timeout=10.0)
        statement = db.prepare(PREPARED, timeout=10.0)
        read: Callable[[], Any] = lambda: db.execute(statement, ("key",)).one()  # noqa: E731
    else:
        from cassandra.cluster import Cluster

        # The driver's default policies, protocol pinned (as the bench's healthy rows).
        session = Cluster([("127.0.0.1", port)], protocol_version=5).connect()
        prepared = session.prepare(PREPARED)
        if subject == "raw":
            read = lambda: session.execute(prepared, ("key",)).one()  # noqa: E731
        else:
            import pybreaker

            breaker = pybreaker.CircuitBreaker(fail_max=5, reset_timeout=1)
            read = lambda: breaker.call(session.execute, prepared, ("key",)).one()  # noqa: E731
    row = read()
    if row is None or row.v != 1:
        raise RuntimeError(f"{subject}: the benchmark row was not read back ({row!r})")
    return read


def _search(name: str, subject: str, op: str, port: int) -> Callable[[], Any]:
    from resilience.bench.search import INDEX, _raw, _wrapper_class

    url = f"http://127.0.0.1:{port}"
    client = (_wrapper_class(name)([url], timeout=1.0, environ={}) if subject == "wrapper"
              else _raw(name, [url], 1.0))
    if subject == "wrapper":
        # The deadline socket keeps an armed timeout that differs from what is left by
        # at most 2 ms, which at native speed holds from urllib3's arming to the send
        # and the receive (0.004 re-arms a call, counted over 2000 calls of each op).
        # Under valgrind a call runs ~50x slower and the socket re-armed twice a call
        # (a settimeout and its frame, ~0.9k instructions each): the slack is scaled
        # by that slowdown so the count is of the native path.
        from resilience.clients._search import _http

        _http._SLACK = 0.1
    query = ({"query": {"term": {"n": 1}}} if name == "elasticsearch"
             else {"body": {"query": {"term": {"n": 1}}}})
    method = client.get if op == "get" else client.search
    args: dict[str, Any] = {"index": INDEX, "id": "1"} if op == "get" else {"index": INDEX,
                                                                             **query}
    if subject == "pybreaker":
        import pybreaker

        breaker = pybreaker.CircuitBreaker(fail_max=5, reset_timeout=1)
        call: Callable[[], Any] = lambda: breaker.call(method, **args)  # noqa: E731
    else:
        call = lambda: method(**args)  # noqa: E731
    reply = call()
    found = (reply["_source"]["n"] if op == "get" else
             reply["hits"]["hits"][0]["_source"]["n"] if reply["hits"]["hits"] else None)
    if found != 1:
        raise RuntimeError(f"{subject}: {op} did not find the benchmark document")
    return call


def _cassandra_no_io(subject: str, port: int) -> Callable[[], Any]:
    """A prepared SELECT with no I/O: the session's ``execute_async`` hands back one
    future answered once at set-up, so no reply is awaited and the reactor thread does
    nothing, and the count repeats to within 1k (the whole call's moves by about 5k).

    raw: the driver's steps of a read that the wrapper runs too: bind, the first host
    of the token-aware plan, the send (the answered future), the wait, the ResultSet.
    pybreaker: those steps inside ``breaker.call``. wrapper: ``execute(...).one()``. So
    "added" is each one's own work on the caller's side.
    """
    from cassandra.cluster import ResultSet

    from resilience.clients.cassandra import Cassandra

    db = Cassandra([f"127.0.0.1:{port}"], environ={}, timeout=10.0)
    statement = db.prepare(PREPARED, timeout=10.0)
    db.execute(statement, ("key",)).one()
    connector = db._driver.get()
    session = connector.session
    host = next(iter(connector.plan(session.keyspace, statement.bind(("key",)))))
    answered = session.execute_async(statement.bind(("key",)), None, timeout=10.0, host=host)
    answered.result()
    session.execute_async = lambda *args, **kwargs: answered

    def steps() -> Any:
        bound = statement.bind(("key",))
        first = next(connector.plan(session.keyspace, bound))
        future = session.execute_async(bound, None, timeout=10.0, paging_state=None,
                                       host=first)
        future._event.wait(10.0)
        return ResultSet(future, future._final_result).one()

    if subject == "raw":
        read: Callable[[], Any] = steps
    elif subject == "pybreaker":
        import pybreaker

        breaker = pybreaker.CircuitBreaker(fail_max=5, reset_timeout=1)
        read = lambda: breaker.call(steps)  # noqa: E731
    else:
        read = lambda: db.execute(statement, ("key",)).one()  # noqa: E731
    if read() is None:
        raise RuntimeError(f"{subject}: the benchmark row was not read back")
    return read


def child(datastore: str, subject: str, op: str, calls: int, port: int) -> None:
    """Warm up, then run ``calls`` healthy calls of ``op`` through ``subject`` with
    callgrind's instrumentation on (when run under it, with the helper)."""
    if datastore == "memcached":
        fn = _memcached(subject, op, port)
    elif datastore == "cassandra":
        fn = _cassandra(subject, port) if op == "prepared select" else _cassandra_no_io(
            subject, port)
    else:
        fn = _search(datastore, subject, op, port)
    for _ in range(200):
        fn()
    helper = os.environ.get(HELPER_ENV)
    lib = ctypes.CDLL(helper) if helper else None
    if lib is not None:
        lib.cg_start()
    for _ in range(calls):
        fn()
    if lib is not None:
        lib.cg_stop()
    os._exit(0)  # the driver's threads are not waited for (nothing after is counted)


def _helper(work: Path) -> Path:
    source, lib = work / "cgctl.c", work / "cgctl.so"
    source.write_text(HELPER_C)
    cc = shutil.which("cc") or shutil.which("gcc")
    if cc is None:
        raise RuntimeError("no C compiler for the callgrind helper: apt-get install gcc")
    out = subprocess.run([cc, "-O2", "-shared", "-fPIC", "-o", str(lib), str(source)],
                         capture_output=True, text=True, timeout=120, check=False)
    if out.returncode != 0:
        raise RuntimeError(f"compiling the callgrind helper failed (valgrind's headers: "
                           f"apt-get install valgrind):\n{out.stderr[-2000:]}")
    return lib


def _count(helper: Path, datastore: str, subject: str, op: str, calls: int,
           port: int, seed: int) -> int:
    out = subprocess.run(
        ["valgrind", "--tool=callgrind", "--instr-atstart=no",
         "--callgrind-out-file=/dev/null", sys.executable, __file__, "--child", datastore,
         subject, op, str(calls), str(port)],
        capture_output=True, text=True, timeout=TIMEOUT, check=False,
        env={**os.environ, HELPER_ENV: str(helper), "PYTHONHASHSEED": str(seed)})
    found = re.search(r"Collected\s*:\s*([\d,]+)", out.stderr)
    if out.returncode != 0 or found is None or int(found.group(1).replace(",", "")) == 0:
        raise RuntimeError(f"callgrind of {datastore} {subject} {op} failed:\n"
                           f"{out.stderr[-2000:]}")
    return int(found.group(1).replace(",", ""))


def measure(helper: Path, datastore: str, calls: int, port: int,
            repeat: int = 1) -> dict[str, dict[str, int]]:
    """Instructions per call, ``{op: {subject: n}}``: the median of ``repeat`` runs.

    Run ``k`` of every subject has ``PYTHONHASHSEED=k``: string hashes, so dict and set
    layouts, are otherwise drawn per process, and they move a count by a few thousand
    (an Elasticsearch ``search``: 0.8k between seeds 0 and 1, while one seed repeats to
    within 20 instructions, on one server or a new one). So the subjects are compared
    under the same seeds. A threaded driver's count also varies with how the reply and
    the waiting caller meet (cassandra-driver: about +-5k per call).
    """
    result: dict[str, dict[str, int]] = {}
    for op in OPS[datastore]:
        for subject in SUBJECTS:
            n = round(statistics.median(
                _count(helper, datastore, subject, op, calls, port, seed)
                for seed in range(repeat)
            ) / calls)
            result.setdefault(op, {})[subject] = n
            print(f"{datastore} {op} {subject}: {n} instructions", file=sys.stderr)
    return result


def markdown(res: dict[str, Any]) -> str:
    repeat = res.get("repeat", {})
    seeded = res.get("seeded", {})
    calls = ", ".join(f"{d}: N = {n}" + (f", median of {repeat[d]} runs"
                                          if repeat.get(d, 1) > 1 else "")
                      + (" (run k of every subject with PYTHONHASHSEED=k)"
                         if seeded.get(d) else "")
                      for d, n in res["calls"].items())
    lines = ["# Instructions per healthy call (callgrind)", "",
             f"Machine: {res['machine']}; Python {res['python']}; the instructions of "
             f"N calls after a warm-up ({calls}), per call (every thread of the client "
             "process; the kernel's and the server's work not counted). Produced by "
             "`python benchmarks/instructions.py --json benchmarks/results/instructions.json "
             "--markdown benchmarks/results/instructions.md`.", "",
             "| datastore | op | raw driver | pybreaker | wrapper | added: pybreaker "
             "| added: wrapper |",
             "|---|---|---:|---:|---:|---:|---:|"]
    tables = {"memcached": res["instructions"], **res.get("more", {})}
    for datastore, ops in tables.items():
        for op, row in ops.items():
            raw = row["raw"]
            lines.append(f"| {datastore} ({DRIVERS[datastore]}) | {op} | {raw} | "
                         f"{row['pybreaker']} | {row['wrapper']} | "
                         f"+{row['pybreaker'] - raw} | +{row['wrapper'] - raw} |")
    return "\n".join(lines) + "\n"


def _run(datastore: str, helper: Path, calls: int, work: Path,
         repeat: int) -> dict[str, dict[str, int]]:
    work.mkdir(parents=True, exist_ok=True)
    if datastore == "memcached":
        from resilience.servers.memcached import Memcached

        server: Any = Memcached(work, name="memcached-instructions", threads=1)
        server.start(timeout=15.0)
    elif datastore == "cassandra":
        from resilience.servers.cassandra import Cassandra

        server = Cassandra(work, name="cassandra-instructions")
        server.start(timeout=120.0)
    else:
        from resilience.bench.search import SearchBench

        server = SearchBench(datastore)._node(work, "127.0.0.1", None)
        server.start(180)
    try:
        if datastore == "cassandra":
            from resilience.bench.cassandra import _setup

            _setup([(server.host, server.port)], 1)
        elif datastore != "memcached":
            from resilience.bench.search import _seed

            _seed(datastore, server.url)
        return measure(helper, datastore, calls, server.port, repeat)
    finally:
        server.kill()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--datastores", default="memcached,cassandra,elasticsearch,opensearch")
    parser.add_argument("--calls", type=int, default=2000)
    parser.add_argument("--repeat", type=int, default=1,
                        help="runs per subject; the median is kept")
    parser.add_argument("--json", type=Path)
    parser.add_argument("--markdown", type=Path)
    parser.add_argument("--child", nargs=5,
                        metavar=("DATASTORE", "SUBJECT", "OP", "CALLS", "PORT"))
    args = parser.parse_args(argv)
    if args.child:
        datastore, subject, op, calls, port = args.child
        child(datastore, subject, op, int(calls), int(port))
        return 0
    datastores = [d.strip() for d in args.datastores.split(",") if d.strip()]
    unknown = [d for d in datastores if d not in OPS]
    if unknown or not datastores:
        parser.error(f"--datastores {args.datastores!r}: expected some of {', '.join(OPS)}")
    if args.calls < 1:
        parser.error(f"--calls {args.calls}: expected at least 1")
    if args.repeat < 1:
        parser.error(f"--repeat {args.repeat}: expected at least 1")
    if shutil.which("valgrind") is None:
        print("valgrind is not installed: apt-get install valgrind", file=sys.stderr)
        return 2
    counts: dict[str, dict[str, dict[str, int]]] = {}
    with tempfile.TemporaryDirectory(prefix="bench-instructions-") as tmp:
        work = Path(tmp)
        helper = _helper(work)
        for datastore in datastores:
            counts[datastore] = _run(datastore, helper, args.calls, work / datastore,
                                     args.repeat)
    from resilience.bench.machine import cpu_model

    res: dict[str, Any] = {"machine": f"{cpu_model()}, {platform.machine()}",
                           "python": platform.python_version(), "calls": {}, "repeat": {},
                           "seeded": {}, "instructions": {}, "more": {}}
    if args.json and args.json.exists():  # the datastores not run this time are kept
        old = json.loads(args.json.read_text())
        for key in ("calls", "repeat", "seeded", "instructions", "more"):
            if isinstance(old.get(key), dict):
                res[key] = old[key]
    for datastore, ops in counts.items():
        res["calls"][datastore] = args.calls
        res["repeat"][datastore] = args.repeat
        res["seeded"][datastore] = True
        if datastore == "memcached":
            res["instructions"] = ops
        else:
            res["more"][datastore] = ops
    if args.json:
        args.json.write_text(json.dumps(res, indent=2) + "\n")
    if args.markdown:
        args.markdown.write_text(markdown(res))
    print(markdown(res))
    return 0


if __name__ == "__main__":
    sys.exit(main())
