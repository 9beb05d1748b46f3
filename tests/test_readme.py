"""README.md and docs/ hold exactly the sections generated from the committed results.

No server is needed: every section is rendered from files in the repository.
"""

from __future__ import annotations

import copy
import json
import pathlib
import shutil
from typing import Any

import pytest

from resilience.bench import docgen, sections

ROOT = pathlib.Path(__file__).resolve().parent.parent
PAIRS = [(f, s) for f, names in docgen.FILES.items() for s in names]


@pytest.mark.parametrize(("file", "section"), PAIRS, ids=[f"{f}:{s}" for f, s in PAIRS])
def test_doc_section_is_the_generated_one(file: str, section: str) -> None:
    """Each marked section equals what its result file gives; a hand edit fails here."""
    text = (ROOT / file).read_text(encoding="utf-8")
    assert docgen.section_text(text, section) == docgen.SECTIONS[section](ROOT), (
        "regenerate with: .venv/bin/python scripts/gen_readme.py"
    )


@pytest.fixture
def repo(tmp_path: pathlib.Path) -> pathlib.Path:
    """A copy of the generated files and their result files, to change freely."""
    for rel in [*docgen.FILES, *docgen.SOURCES.values()]:
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(ROOT / rel, tmp_path / rel)
    return tmp_path


def _edit_json(path: pathlib.Path, change: Any) -> None:
    data = json.loads(path.read_text())
    change(data)
    path.write_text(json.dumps(data))


def test_a_changed_result_file_changes_the_docs_and_update_writes_it(
    repo: pathlib.Path,
) -> None:
    """A new overhead figure reaches README.md and docs/core.md; a second update is a
    no-op."""
    before = (repo / "README.md").read_text()

    def bump(data: dict[str, Any]) -> None:
        data["rows"][0]["us_per_call"]["median"] = 9.876

    _edit_json(repo / docgen.SOURCES["overhead"], bump)
    assert docgen.expected(repo, "README.md") != before
    assert set(docgen.update(repo)) == {"README.md", "docs/core.md"}
    for doc in ("README.md", "docs/core.md"):
        assert "| `pipeline.call`, healthy, added over the bare call | 9.88 |" in (
            repo / doc).read_text()
    assert docgen.update(repo) == []


def test_a_hand_edited_figure_is_put_back(repo: pathlib.Path) -> None:
    readme = repo / "README.md"
    good = readme.read_text()
    readme.write_text(good.replace("| 4 µs |", "| 3 µs |", 1))
    assert docgen.expected(repo, "README.md") == good


def test_missing_or_doubled_markers_are_an_error() -> None:
    with pytest.raises(ValueError, match="what-it-buys"):
        docgen.section_text("no markers here", "what-it-buys")
    twice = "<!-- x:start -->\n<!-- x:end -->\n" * 2
    with pytest.raises(ValueError, match="'x'"):
        docgen.section_text(twice, "x")


def test_refresh_ignores_files_that_are_not_committed_results(tmp_path: pathlib.Path) -> None:
    assert docgen.refresh_after_run(tmp_path / "results.json") == []


def _run() -> dict[str, Any]:
    data = json.loads((ROOT / docgen.SOURCES["failure-latency"]).read_text())
    assert isinstance(data, dict)
    return data


def test_fault_table_says_hangs_and_silent_misses_as_such() -> None:
    text = sections.what_it_buys(_run())
    row = next(line for line in text.splitlines() if line.startswith("| one of three nodes"))
    assert "hang >= 5 s" in row and "calls a silent miss" in row


def test_healthy_path_says_whether_the_ratio_target_is_met() -> None:
    run, overhead = _run(), json.loads((ROOT / docgen.SOURCES["overhead"]).read_text())
    counts = {"instructions": {"get": {"raw": 48_000, "wrapper": 60_000, "pybreaker": 64_000},
                               "set": {"raw": 37_000, "wrapper": 50_000, "pybreaker": 57_000}}}
    text = sections.healthy_path(overhead, run, counts).replace("\n", " ")
    assert "adds 12.0k to a `get` of 48.0k (pybreaker: 16.0k)" in text
    assert "13.0k to a `set` (pybreaker: 20.0k)" in text
    fast = copy.deepcopy(run)
    for row in fast["overhead"]:
        if row["subject"] == "wrapper":
            row["ratio"] = 1.02
    assert "1.03x is met" in sections.healthy_path(overhead, fast, counts).replace("\n", " ")
    slow = copy.deepcopy(run)
    for row in slow["overhead"]:
        if row["subject"] == "wrapper":
            row["ratio"] = 1.2
    assert "1.03x is not met" in sections.healthy_path(overhead, slow, counts).replace(
        "\n", " ")


def test_servers_table_formats_measured_rows_and_names_carried_over_ones() -> None:
    result = json.loads((ROOT / docgen.SOURCES["servers"]).read_text())
    measured = {"name": "memcached", "label": "memcached 9.9", "from": "apt",
                "status": "measured", "measured_at": "2030-01-01",
                "install": {"status": "measured", "seconds": 4.84, "measured_at": "2030-01-01"},
                "topologies": [{"name": "default", "start_s": [0.3, 0.012, 0.011],
                                "rss_mb": [4.5]}]}
    result["servers"] = [measured, *[r for r in result["servers"] if r["status"] == "recorded"]]
    text = sections.servers_table(result)
    assert "| memcached 9.9 | apt | 4.8 s | 0.01 s | 4.5 MB |" in text  # median of 3 starts
    recorded = [r["label"].split()[0] for r in result["servers"] if r["status"] == "recorded"]
    flat = text.replace("\n", " ")
    assert all(name in flat for name in recorded) and "2030-01-01" in flat


def test_refresh_after_a_full_run_rewrites_the_docs_of_a_checkout(
    repo: pathlib.Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """What `resilience bench` and the benchmark scripts call after writing a committed
    result file: the docs follow it."""
    monkeypatch.chdir(repo)
    proxy = repo / docgen.SOURCES["proxy"]

    def slower(data: dict[str, Any]) -> None:
        data["paths"]["proxy-process"]["added_p50_us"] = 321.0

    _edit_json(proxy, slower)
    assert docgen.refresh_after_run(proxy) == ["docs/faults.md"]
    assert "the proxy added 321 µs" in (repo / "docs/faults.md").read_text().replace("\n", " ")
