"""benchmarks/instructions.py without valgrind: each subject's child really makes the
healthy calls it is counted for (it reads the value or the row back), and the report."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from resilience.testing._server_fixtures import require_driver

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "instructions.py"


def _child(datastore: str, subject: str, op: str, port: int) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, str(SCRIPT), "--child", datastore, subject, op,
                           "20", str(port)], capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize("subject", ["raw", "pybreaker", "wrapper"])
@pytest.mark.parametrize("op", ["get", "set"])
def test_each_child_makes_its_calls_against_real_memcached(memcached: Any, subject: str,
                                                           op: str) -> None:
    out = _child("memcached", subject, op, memcached.port)
    assert out.returncode == 0, out.stderr


@pytest.mark.servers("cassandra")
@pytest.mark.slow
def test_each_child_reads_the_row_from_real_cassandra(
        real_server: Callable[[str], Any]) -> None:
    require_driver("cassandra", "cassandra.cluster")
    from resilience.bench.cassandra import _setup

    node = real_server("cassandra")
    _setup([(node.host, node.port)], 1)
    for op in ("prepared select", "select, no I/O"):
        for subject in ("raw", "pybreaker", "wrapper"):
            out = _child("cassandra", subject, op, node.port)
            assert out.returncode == 0, f"{subject} {op}: {out.stderr}"


def test_a_child_that_cannot_read_its_row_fails() -> None:
    # Nothing listens on port 1: the child must fail, not count an empty loop.
    out = _child("memcached", "wrapper", "get", 1)
    assert out.returncode != 0


def test_the_report_gives_what_each_subject_adds_over_raw() -> None:
    sys.path.insert(0, str(SCRIPT.parent))
    try:
        import instructions  # type: ignore[import-not-found]
    finally:
        sys.path.remove(str(SCRIPT.parent))
    text = instructions.markdown({
        "machine": "m", "python": "3.11", "calls": {"memcached": 10},
        "instructions": {"get": {"raw": 100, "pybreaker": 130, "wrapper": 125}},
        "more": {"cassandra": {"prepared select": {"raw": 800, "pybreaker": 815,
                                                   "wrapper": 840}}}})
    assert "| memcached (pymemcache) | get | 100 | 130 | 125 | +30 | +25 |" in text
    assert "| cassandra (cassandra-driver) | prepared select | 800 | 815 | 840 | +15 | +40 |" \
        in text
