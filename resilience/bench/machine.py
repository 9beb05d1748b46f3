"""What a benchmark says about the machine it ran on, shared by every benchmark.

A microsecond figure means little without the CPU, the versions and the load it was
measured under, so each report opens with them.
"""

from __future__ import annotations

from collections.abc import Iterable
from importlib import metadata

__all__ = ["cpu_model", "package_versions"]


def cpu_model() -> str:
    """The CPU's model name from /proc/cpuinfo, or ``"unknown"``."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return "unknown"


def package_versions(names: Iterable[str], missing: str = "not installed") -> dict[str, str]:
    """Installed version of each distribution in ``names`` (``missing`` if absent)."""
    out: dict[str, str] = {}
    for name in names:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = missing
    return out
