"""benchmarks/instructions.py without valgrind: each subject's child really makes the
healthy calls it is counted for (a get reads the value back), and the report's sums."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "instructions.py"


@pytest.mark.parametrize("subject", ["raw", "pybreaker", "wrapper"])
@pytest.mark.parametrize("op", ["get", "set"])
def test_each_child_makes_its_calls_against_real_memcached(memcached: Any, subject: str,
                                                           op: str) -> None:
    out = subprocess.run([sys.executable, str(SCRIPT), "--child", subject, op, "20",
                          str(memcached.port)], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr


def test_the_report_gives_what_each_subject_adds_over_raw() -> None:
    sys.path.insert(0, str(SCRIPT.parent))
    try:
        import instructions  # type: ignore[import-not-found]
    finally:
        sys.path.remove(str(SCRIPT.parent))
    text = instructions.markdown({"machine": "m", "python": "3.11", "calls": 10,
                                  "instructions": {"get": {"raw": 100, "pybreaker": 130,
                                                           "wrapper": 125}}})
    assert "| get | 100 | 130 | 125 | +30 | +25 |" in text
