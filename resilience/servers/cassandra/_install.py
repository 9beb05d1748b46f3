"""Install Cassandra: its jars from Maven Central, Java 17 and Maven from apt if missing.

A throwaway POM with one dependency, ``org.apache.cassandra:cassandra-all``, and ``mvn
dependency:copy-dependencies`` put every runtime jar (about 100, 67 MB) in
``$RESILIENCE_HOME/cassandra-<version>/lib``. The jars land in a temporary directory that
is renamed into place, with a ``.complete`` marker, only when Maven succeeded: an
interrupted install leaves nothing half-done, and :func:`is_installed` is a file check.
Maven's ``~/.m2`` is reused when present (``MAVEN_OPTS`` is honoured).
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

from resilience.servers._base import NotInstalledError, install_command
from resilience.servers.install import (
    InstallError,
    apt_install,
    home,
    install_lock,
    java17_home,
    retry,
    run_step,
)

__all__ = ["NAME", "VERSION", "install", "is_installed", "java17", "lib_dir"]

NAME = "cassandra"
VERSION = "5.0.9"  # the newest 5.0.x Maven Central served on 2026-11-30
DEPENDENCY_PLUGIN = "org.apache.maven.plugins:maven-dependency-plugin:3.6.1"
COMPLETE = ".complete"  # written last: a lib dir without it is a half-done install

_POM = """<?xml version="1.0" encoding="UTF-8"?>
<project xmlns="http://maven.apache.org/POM/4.0.0">
  <modelVersion>4.0.0</modelVersion>
  <groupId>resilience.servers</groupId>
  <artifactId>cassandra-jars</artifactId>
  <version>1</version>
  <packaging>pom</packaging>
  <dependencies>
    <dependency>
      <groupId>org.apache.cassandra</groupId>
      <artifactId>cassandra-all</artifactId>
      <version>{version}</version>
    </dependency>
  </dependencies>
</project>
"""


def java17() -> Path:
    """The Java 17 binary (:func:`~resilience.servers.install.java17_home`): Cassandra 5.0
    runs on Java 11 or 17 only (Java 24+ removed the security manager it installs).

    Raises:
        NotInstalledError: no Java 17 found (the message says how to install one).
    """
    java_home = java17_home()
    if java_home is None:
        raise NotInstalledError(
            NAME,
            "no Java 17 ($RESILIENCE_JAVA_HOME, or java-17-openjdk* or temurin-17* in"
            " /usr/lib/jvm)",
            install_hint=install_command(NAME) + " (or set RESILIENCE_JAVA_HOME to a JDK 17)",
        )
    return java_home / "bin" / "java"


def lib_dir(version: str = VERSION) -> Path:
    """Where the jars of Cassandra ``version`` are cached (may not exist yet)."""
    return home() / f"cassandra-{version}" / "lib"


def is_installed() -> bool:
    """True when Java 17 and a completed jar download are present (no network)."""
    try:
        java17()
    except NotInstalledError:
        return False
    return (lib_dir() / COMPLETE).is_file()


def install() -> str:
    """Fetch Cassandra's jars from Maven Central (and Java 17 and Maven from apt if missing).

    Idempotent: a completed install returns at once. The download goes to a temporary
    directory renamed into place only when Maven succeeded, so an interrupted install
    leaves nothing half-done behind.

    Raises:
        InstallError: the step that failed (apt, mvn), its command and its output's tail.
    """
    with install_lock(NAME):
        if is_installed():
            return f"cassandra {VERSION} already installed ({lib_dir()})"
        done = []
        try:
            java17()
        except NotInstalledError:
            done.append(apt_install(NAME, ["openjdk-17-jdk-headless"]))
        if shutil.which("mvn") is None:
            done.append(apt_install(NAME, ["maven"]))
        done.append(_fetch_jars())
        return "; ".join(done)


def _fetch_jars() -> str:
    target = lib_dir()
    if (target / COMPLETE).is_file():
        return f"jars already in {target}"
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=target.parent, prefix="fetch-") as tmp:
        work = Path(tmp)
        (work / "pom.xml").write_text(_POM.format(version=VERSION))
        out = work / "lib"
        cmd = ["mvn", "-q", "-B", "-f", str(work / "pom.xml"),
               f"{DEPENDENCY_PLUGIN}:copy-dependencies",
               "-DincludeScope=runtime", f"-DoutputDirectory={out}"]  # fmt: skip
        env = {**os.environ, "JAVA_HOME": str(java17().parent.parent)}
        retry(lambda: run_step(NAME, cmd, timeout=900, env=env), what="mvn copy-dependencies")
        jars = sorted(out.glob("cassandra-all-*.jar"))
        if not jars or not list(out.glob("jamm-*.jar")):
            raise InstallError(NAME, f"mvn ran but {out} lacks cassandra-all or jamm", command=cmd)
        (out / COMPLETE).write_text(VERSION + "\n")
        if target.exists():  # a half-done earlier attempt without the marker
            shutil.rmtree(target)
        out.rename(target)
    return f"fetched {len(list(target.glob('*.jar')))} jars of cassandra {VERSION} into {target}"
