"""Rewrite the option table in README.md and docs/configuration.md from the dataclasses.

Run after changing an option: ``.venv/bin/python scripts/gen_option_table.py``. The
tests fail while either file's table differs from ``option_table_markdown()``.
"""

from __future__ import annotations

import pathlib

from resilience.config import option_table_markdown

START, END = "<!-- options-table:start -->\n", "<!-- options-table:end -->"
ROOT = pathlib.Path(__file__).resolve().parent.parent

for name in ("README.md", "docs/configuration.md"):
    path = ROOT / name
    text = path.read_text()
    head, rest = text.split(START, 1)
    _, tail = rest.split(END, 1)
    path.write_text(head + START + option_table_markdown() + END + tail)
    print(f"updated {name}")
