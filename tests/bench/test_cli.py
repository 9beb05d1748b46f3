"""`resilience bench` end to end on real memcached, and its input checks."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pytest

from resilience.bench import cli, plugin, scenarios
from resilience.cli import main


def test_unknown_datastore_and_fault_are_refused_with_the_known_names() -> None:
    with pytest.raises(ValueError, match="memcached"):
        plugin.load("redis")
    with pytest.raises(ValueError, match="frozen"):
        scenarios.select(["melted"])


def test_memcached_plugin_satisfies_the_datastore_interface() -> None:
    assert isinstance(plugin.load("memcached"), plugin.Datastore)


def test_bad_fault_exits_2(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    assert main(["bench", "--faults", "melted", "--out", str(tmp_path)]) == 2
    assert "melted" in capsys.readouterr().err


@pytest.mark.slow
def test_quick_run_measures_raw_and_wrapper_and_writes_reports(memcached: object,
                                                               tmp_path: Path) -> None:
    out = tmp_path / "results"
    assert main(["bench", "--quick", "--faults", "refused,frozen", "--no-overhead",
                 "--out", str(out)]) == 0
    data = json.loads((out / "results.json").read_text())
    rows = {(r["fault"], r["subject"]): r for r in data["faults"]}
    assert set(rows) == {(f, s) for f in ("refused", "frozen") for s in plugin.SUBJECTS}
    frozen_raw = rows[("frozen", "raw-default")]
    assert frozen_raw["hangs"] == 1  # pymemcache's defaults block on a frozen server
    wrapper = rows[("frozen", "wrapper")]
    assert wrapper["hangs"] == 0 and wrapper["stats"]["max"] < 0.1 + 0.25
    assert (out / "failure-latency.png").exists() and (out / "results.md").exists()


def test_quick_run_does_not_overwrite_the_committed_full_result() -> None:
    """Without --out, --quick writes to its own folder and a full run to the committed one."""
    parser = argparse.ArgumentParser()
    cli.register(parser)
    assert cli.output_dir(parser.parse_args([])) == cli.DEFAULT_OUT
    assert cli.output_dir(parser.parse_args(["--quick"])) == cli.QUICK_OUT != cli.DEFAULT_OUT
    assert cli.output_dir(parser.parse_args(["--quick", "--out", "/tmp/r"])) == Path("/tmp/r")


def test_hedging_quick_run_writes_its_rows(memcached: object, tmp_path: Path,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    # Small: 4 threads x 100 gets per row, six rows, a proxy process per row.
    assert main(["bench", "--hedging", "--quick", "--out", str(tmp_path)]) == 0
    data = json.loads((tmp_path / "results.json").read_text())
    rows = {(r["fault"], r["hedging"]): r for r in data["rows"]}
    assert set(rows) == {(f, m) for f in ("none", "node slow", "1 in 4 connections slow")
                         for m in ("off", "on")}
    for (_, mode), row in rows.items():
        assert row["calls"] == 400 and row["errors"] == 0
        if mode == "off":
            assert row["hedges"] == 0
        assert row["extra_load_pct"] <= 5.0 + 100.0 * 10 / 400  # the budget and its floor
    assert "| node slow | on |" in (tmp_path / "results.md").read_text()


def test_a_hedging_run_of_one_datastore_keeps_the_rows_of_the_others() -> None:
    from resilience.bench.hedging import merge

    old = {"settings": {"latency_toxic_ms_by_datastore": {"memcached": 20.0,
                                                          "elasticsearch": 70.0}},
           "rows": [{"fault": "none", "hedging": "off"},
                    {"fault": "elasticsearch: none", "hedging": "off"},
                    {"fault": "cassandra: none", "hedging": "off", "p99_ms": 1.0}]}
    new = [{"datastore": "cassandra", "fault": "cassandra: none", "hedging": "off",
            "p99_ms": 2.0}]
    rows, toxic = merge(old, ("cassandra",), new, {"cassandra": 9.0})
    assert [r["fault"] for r in rows] == ["none", "elasticsearch: none", "cassandra: none"]
    assert rows[-1]["p99_ms"] == 2.0  # the old cassandra row is replaced, not kept
    assert toxic == {"memcached": 20.0, "elasticsearch": 70.0, "cassandra": 9.0}
