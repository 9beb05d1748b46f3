"""Generated sections of README.md and docs/: one mechanism for every figure they show.

A section is the text between ``<!-- NAME:start -->`` and ``<!-- NAME:end -->`` in a
Markdown file; :data:`SECTIONS` renders each one from the committed result files (or,
for the option table, from the options classes) and :data:`FILES` says which files hold
which sections. ``python scripts/gen_readme.py`` rewrites them all; the tests
(tests/test_readme.py) fail while a file differs from what :func:`expected` gives, so a
new result file or a hand edit cannot leave the docs behind.

Everything here reads files under a repository root given by the caller and writes only
through :func:`update`.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from resilience.bench import sections

__all__ = [
    "FILES", "SECTIONS", "SOURCES", "expected", "refresh_after_run", "section_text", "update",
]


def _options_table(_root: Path) -> str:
    from resilience.config import option_table_markdown  # imports every client module

    return option_table_markdown()


def _goodput_section(result: dict[str, Any]) -> str:
    from resilience.bench.goodput_report import doc_section

    return doc_section(result)


def _json(root: Path, name: str) -> dict[str, Any]:
    data = json.loads((root / SOURCES[name]).read_text(encoding="utf-8"))
    if not isinstance(data, dict):
        raise ValueError(f"{SOURCES[name]}: expected a JSON object")
    return data


# The committed result file behind each kind of figure (paths from the repository root).
SOURCES: dict[str, str] = {
    "failure-latency": "benchmarks/results/failure-latency/results.json",
    "goodput": "benchmarks/results/goodput/results.json",
    "overhead": "benchmarks/results/overhead.json",
    "instructions": "benchmarks/results/instructions.json",
    "proxy": "benchmarks/results/proxy.json",
    "servers": "benchmarks/results/servers.json",
}

# Section name -> renderer(root) -> the Markdown between its markers (ends with "\n").
SECTIONS: dict[str, Callable[[Path], str]] = {
    "options-table": _options_table,
    "what-it-buys": lambda root: sections.what_it_buys(_json(root, "failure-latency")),
    "healthy-path": lambda root: sections.healthy_path(
        _json(root, "overhead"), _json(root, "failure-latency"), _json(root, "instructions")
    ),
    "bench-run": lambda root: sections.bench_run(_json(root, "failure-latency")),
    "goodput-run": lambda root: _goodput_section(_json(root, "goodput")),
    "overhead-table": lambda root: sections.overhead_table(_json(root, "overhead")),
    "proxy-cost": lambda root: sections.proxy_cost(_json(root, "proxy")),
    "servers-table": lambda root: sections.servers_table(_json(root, "servers")),
}

# File (from the repository root) -> the sections it holds, each exactly once.
FILES: dict[str, tuple[str, ...]] = {
    "README.md": ("what-it-buys", "options-table", "servers-table", "healthy-path"),
    "docs/configuration.md": ("options-table",),
    "docs/core.md": ("overhead-table",),
    "docs/faults.md": ("proxy-cost",),
    "docs/bench.md": ("bench-run", "goodput-run"),
}


def _markers(name: str) -> tuple[str, str]:
    return f"<!-- {name}:start -->\n", f"<!-- {name}:end -->"


def section_text(text: str, name: str) -> str:
    """The text between the markers of section ``name`` in ``text``.

    Raises:
        ValueError: the markers are missing, repeated or out of order.
    """
    start, end = _markers(name)
    if text.count(start) != 1 or text.count(end) != 1:
        raise ValueError(f"section {name!r}: expected one {start.strip()} and one {end}")
    i, j = text.index(start) + len(start), text.index(end)
    if j < i:
        raise ValueError(f"section {name!r}: end marker before start marker")
    return text[i:j]


def expected(root: Path, file: str, cache: dict[str, str] | None = None) -> str:
    """The whole text ``file`` should have: its current text with every section
    regenerated (``cache`` shares rendered sections between files)."""
    cache = {} if cache is None else cache
    text = (root / file).read_text(encoding="utf-8")
    for name in FILES[file]:
        section_text(text, name)  # checks the markers
        if name not in cache:
            cache[name] = SECTIONS[name](root)
        start, end = _markers(name)
        head, rest = text.split(start, 1)
        _, tail = rest.split(end, 1)
        text = head + start + cache[name] + end + tail
    return text


def update(root: Path) -> list[str]:
    """Rewrite every generated section under ``root``; return the files that changed."""
    cache: dict[str, str] = {}
    changed = []
    for file in FILES:
        path = root / file
        new = expected(root, file, cache)
        if new != path.read_text(encoding="utf-8"):
            path.write_text(new, encoding="utf-8")
            changed.append(file)
    return changed


def refresh_after_run(written: Path) -> list[str]:
    """After a full benchmark run wrote ``written``: if that is a committed result file
    of a checkout (``SOURCES``, under the current directory), regenerate the docs and
    say which files changed; otherwise do nothing."""
    root = Path.cwd()
    try:
        rel = written.resolve().relative_to(root.resolve()).as_posix()
    except ValueError:
        return []
    if rel not in SOURCES.values() or not all((root / f).exists() for f in FILES):
        return []
    return update(root)
