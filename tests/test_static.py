"""The code base stays lint-clean (ruff) and fully typed (mypy --strict), checked in CI."""

from __future__ import annotations

import importlib.util
import pathlib
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parent.parent


@pytest.mark.parametrize(
    ("tool", "args"),
    [("ruff", ["check", "."]), ("mypy", [])],  # settings in pyproject.toml
)
def test_tool_reports_no_issue(tool: str, args: list[str]) -> None:
    """ruff and mypy (strict, package + tests + benchmarks + examples) find nothing."""
    if importlib.util.find_spec(tool) is None:
        pytest.skip(f"{tool} is not installed (pip install -e '.[dev]')")
    proc = subprocess.run(
        [sys.executable, "-m", tool, *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
