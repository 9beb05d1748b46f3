"""Reports: hangs say 'hang >= cap', skipped rows say why, all files are written."""

from __future__ import annotations

import json
from pathlib import Path

from resilience.bench.model import FaultRow, OverheadRow, RunResult, Stats, percentile
from resilience.bench.report import markdown, table, write_all


def _result() -> RunResult:
    result = RunResult({"python": "3.11"}, {"budget_s": 0.1})
    result.faults = [
        FaultRow.measured("memcached", "frozen", "raw-default", [5.0], ["hang"], 5.0),
        FaultRow.measured("memcached", "frozen", "wrapper", [0.1, 0.101, 0.00001],
                          ["BackendTimeoutError", "BackendTimeoutError", "CircuitOpenError"],
                          5.0, open_cost=4e-6),
        FaultRow("memcached", "reject", "wrapper", skipped="needs root"),
    ]
    result.overhead = [OverheadRow("memcached", "get", "wrapper", 30.0, 29.0, 31.0, 1.05)]
    return result


def test_percentile_is_nearest_rank() -> None:
    values = sorted(float(i) for i in range(1, 101))
    assert percentile(values, 50) == 50.0 and percentile(values, 99) == 99.0
    assert Stats.of([3.0, 1.0, 2.0]) == Stats(3, 2.0, 3.0, 3.0)


def test_table_shows_hangs_at_the_cap_skips_with_reason_and_overhead_ratio() -> None:
    text = table(_result())
    assert "hang >= 5 s" in text
    assert "needs root" in text
    assert "1.050" in text
    assert "4 µs" in text  # open-breaker cost


def test_markdown_json_and_png_are_written(tmp_path: Path) -> None:
    paths = write_all(_result(), tmp_path / "out")
    names = sorted(p.name for p in paths)
    assert names == ["failure-latency.png", "results.json", "results.md"]
    assert (tmp_path / "out" / "failure-latency.png").read_bytes()[:4] == b"\x89PNG"
    data = json.loads((tmp_path / "out" / "results.json").read_text())
    assert data["faults"][0]["hangs"] == 1
    assert "| memcached | frozen | raw-default |" in markdown(_result())
