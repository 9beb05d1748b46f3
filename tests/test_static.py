"""Static checks: ruff and mypy --strict are clean, the repository cites only its own docs
(every link resolves), and package dependencies point one way."""

from __future__ import annotations

import ast
import importlib.util
import pathlib
import re
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


# --- The repository is self-contained: it cites its own docs, nothing outside. ---------

# Built at run time so that this file does not match its own patterns.
_OUTSIDE_DOCS = [d.upper() for d in
                 ("design", "clients", "wrappers", "drivers", "servers", "conventions")]
_OUTSIDE = re.compile(
    r"\b(?:" + "|".join(_OUTSIDE_DOCS) + r")\.md\b"  # planning files users do not have
    r"|\b(?:" + "|".join(_OUTSIDE_DOCS[::5]) + r")\b"  # the first and last, also bare
    r"|\.\./" + "shared"                               # the planning directory
    r"|\b[Cc]ontract [0-9]"                            # a contract by number, not by anchor
)
_ARCH_REF = re.compile(r"docs/architecture\.md#([A-Za-z0-9_-]+)")
_MD_LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")


def _tracked_text_files() -> dict[str, str]:
    """Every file git tracks (outside .git), as text; binary files are left out."""
    try:
        proc = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True,
                              timeout=60, check=True)
    except (OSError, subprocess.CalledProcessError) as exc:
        pytest.skip(f"not a git checkout: {exc}")
    files = {}
    for name in proc.stdout.decode().split("\0"):
        path = ROOT / name
        if not name or not path.is_file():
            continue
        data = path.read_bytes()
        if b"\0" in data:
            continue
        files[name] = data.decode("utf-8", errors="replace")
    return files


def _anchors(markdown: str) -> set[str]:
    """The anchors a Markdown page offers: explicit ``<a id>`` and GitHub heading slugs."""
    found = set(re.findall(r'<a id="([^"]+)"', markdown))
    for heading in re.findall(r"^#{1,6} +(.+?) *$", markdown, flags=re.M):
        found.add(re.sub(r"[^\w\- ]", "", heading.lower()).replace(" ", "-"))
    return found


def test_no_file_cites_documents_outside_the_repository() -> None:
    """Users do not have the planning files; code, docs and results cite docs/ instead."""
    hits = [f"{name}:{n}: {line.strip()}"
            for name, text in _tracked_text_files().items()
            for n, line in enumerate(text.splitlines(), 1) if _OUTSIDE.search(line)]
    assert not hits, "cite docs/architecture.md (by anchor) instead:\n" + "\n".join(hits)


def test_architecture_anchors_cited_anywhere_exist() -> None:
    """Every anchor of docs/architecture.md cited in the repository exists there."""
    offered = _anchors((ROOT / "docs" / "architecture.md").read_text())
    assert {"no-hang", "rejections-do-no-io", "fault-modes"} <= offered
    missing = [f"{name}: #{anchor}"
               for name, text in _tracked_text_files().items()
               for anchor in _ARCH_REF.findall(text) if anchor not in offered]
    assert not missing, "no such anchor in docs/architecture.md:\n" + "\n".join(missing)


def test_relative_links_in_readme_and_docs_resolve() -> None:
    """Every relative link of README.md and docs/*.md names an existing file (and anchor)."""
    pages = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
    broken = []
    for page in pages:
        for target in _MD_LINK.findall(page.read_text()):
            if re.match(r"[a-z]+:", target):
                continue  # http:, https:, mailto:
            path, _, anchor = target.partition("#")
            dest = (page.parent / path).resolve() if path else page
            if not dest.exists():
                broken.append(f"{page.relative_to(ROOT)}: {target}: no such file")
            elif anchor and dest.suffix == ".md" and anchor not in _anchors(dest.read_text()):
                broken.append(f"{page.relative_to(ROOT)}: {target}: no such anchor")
    assert not broken, "\n".join(broken)


# --- Dependencies point one way (docs/architecture.md#layout). --------------------------


def _imports(path: pathlib.Path) -> set[str]:
    """Every ``resilience.*`` module ``path`` imports, at any depth (lazy imports too)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module == "resilience":
            found.update(f"resilience.{a.name}" for a in node.names)  # maybe a subpackage
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
    return {m for m in found if m == "resilience" or m.startswith("resilience.")}


def test_package_dependencies_point_one_way() -> None:
    """faults and servers import nothing else of the package; core, config and errors import
    no client or tool; no client imports another client; propagation imports only core
    and errors."""
    tools = {"faults", "servers", "testing", "bench", "cli", "control", "soak"}
    wrong = []
    for path in sorted((ROOT / "resilience").rglob("*.py")):
        parts = path.relative_to(ROOT).with_suffix("").parts  # ("resilience", "core", ...)
        if len(parts) < 3:
            continue  # __init__, __main__, cli, errors are checked through their users
        part = parts[1]
        for module in _imports(path):
            target = module.split(".")[1:]
            if not target:
                bad = part in ("faults", "servers", "core", "config", "clients")
            elif part in ("faults", "servers"):
                bad = target[0] != part
            elif part in ("core", "config"):
                bad = target[0] in tools or (target[0] == "clients" and part == "core")
            elif part == "propagation":  # core and errors only: no client, no tool
                bad = target[0] not in ("core", "errors", "propagation")
            elif part == "clients":
                bad = target[0] in tools or (
                    target[0] == "clients" and len(parts) > 3 and len(target) > 1
                    and not target[1].startswith("_") and target[1] != parts[2])
            else:
                bad = False
            if bad:
                wrong.append(f"{'/'.join(parts)}.py imports {module}")
    errors_imports = _imports(ROOT / "resilience" / "errors.py")
    wrong += [f"resilience/errors.py imports {m}" for m in errors_imports]
    assert not wrong, "\n".join(wrong)
