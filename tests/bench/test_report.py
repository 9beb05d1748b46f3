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


def test_the_cpu_the_wrapper_adds_is_reported_beside_pybreakers_in_every_output(
        tmp_path: Path) -> None:
    """For each operation measured for both, the table, results.md and results.json give
    the wrapper's and pybreaker's added CPU with their spread, and which is lower."""
    result = _result()
    result.overhead = [
        OverheadRow("memcached", "get", "wrapper", 30.0, 29.0, 31.0, 1.05, 40.0, 2.5, 2.0, 3.0),
        OverheadRow("memcached", "get", "pybreaker + pymemcache", 30.0, 29.0, 31.0, 1.04,
                    40.0, 3.5, 3.0, 4.0),
        OverheadRow("memcached", "set", "wrapper", 30.0, 29.0, 31.0, 1.05, 40.0, 4.25, 4.0, 5.0),
        OverheadRow("memcached", "set", "pybreaker + pymemcache", 30.0, 29.0, 31.0, 1.04,
                    40.0, 3.75, 3.0, 4.0),
        OverheadRow("memcached", "get_many (10 keys, 3 nodes)", "wrapper", 90.0, 80.0, 99.0,
                    1.1, 100.0, 9.0, 8.0, 10.0),
    ]
    assert "+2.50" in table(result) and "+3.50" in table(result)
    md = markdown(result)
    assert "| memcached | get | +2.50 | +2.00..+3.00 | +3.50 | +3.00..+4.00 | yes |" in md
    assert "| memcached | set | +4.25 | +4.00..+5.00 | +3.75 | +3.00..+4.00 | no |" in md
    write_all(result, tmp_path)
    data = json.loads((tmp_path / "results.json").read_text())
    compared = {c["operation"]: c for c in data["cpu_added_comparison"]}
    assert set(compared) == {"get", "set"}  # no pybreaker row for get_many
    assert compared["get"]["at_most_peer"] and not compared["set"]["at_most_peer"]
    assert compared["get"]["peer_iqr_us"] == [3.0, 4.0]
