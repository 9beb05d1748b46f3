"""The asyncio rows of the healthy-path benchmark: the wrapper, aiomcache and emcache
read the same value from a real memcached, and the report gives them their own table."""

from __future__ import annotations

from pathlib import Path

import pytest

from resilience.bench import memcached_async
from resilience.bench.memcached import PLUGIN
from resilience.bench.model import OverheadRow, RunResult
from resilience.bench.report import markdown, table
from resilience.testing._server_fixtures import require_installed


def test_every_subject_has_a_row_per_operation_against_a_real_server(tmp_path: Path) -> None:
    require_installed("memcached")
    pytest.importorskip("aiomcache")
    pytest.importorskip("emcache")
    server = PLUGIN.start_server(str(tmp_path))
    try:
        rows = memcached_async.overhead(server.host, server.port, 0, time_limit=0.0,
                                        round_calls=16, cycles=1)
    finally:
        server.stop()
    got = {(r.operation, r.subject) for r in rows}
    for op in ("get, 1 task", "get, 16 tasks", "get, 128 tasks", "get_many(10 keys), 1 task"):
        for subject in ("aiomcache (pool N)", "emcache (pool N)", "wrapper (pool N)"):
            assert (op, subject) in got
    assert ("get, 16 tasks", "emcache (default)") in got
    assert ("get, 1 task", "emcache (default)") not in got  # one task: same as pool N
    for row in rows:
        assert 0 < row.min_us <= row.median_us <= row.max_us and row.cpu_us > 0
        if row.subject == memcached_async.BASELINE:
            assert row.ratio == 1.0 and row.cpu_added_us == 0.0


def test_report_gives_asyncio_rows_their_own_table_with_calls_per_second() -> None:
    result = RunResult({"python": "3.11"}, {"budget_s": 0.1})
    result.overhead = [
        OverheadRow("memcached", "get", "wrapper", 30.0, 29.0, 31.0, 1.05),
        OverheadRow(memcached_async.DATASTORE, "get, 16 tasks", "wrapper (pool N)",
                    50.0, 40.0, 60.0, 0.98, 45.0, -1.5),
    ]
    for text in (table(result), markdown(result)):
        assert "calls/s" in text and "20,000" in text  # 1e6 / 50 µs
        assert "-1.5" in text
    assert "## Healthy-path cost, asyncio" in markdown(result)
