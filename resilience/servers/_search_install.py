"""Install Elasticsearch or OpenSearch from Maven Central, and the user that runs them.

Each :class:`Distribution` is an *integ-test-zip* (the real launcher and server, few
modules, no bundled JDK) run on Debian's Java 17. Installing fetches the zip with Maven,
checks its pinned SHA-256, unpacks it where :data:`RUN_USER` can read it
(:func:`dist_root`) and creates that user when we are root, since both launchers refuse
to run as root. Every step is idempotent, cached and names itself when it fails.
"""

from __future__ import annotations

import grp
import hashlib
import os
import pwd
import shutil
import stat
import tempfile
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from resilience.servers.install import (
    InstallError,
    apt_install,
    home,
    install_lock,
    retry,
    run_step,
)
from resilience.servers.install import java17_home as java_home

__all__ = [
    "MARKER",
    "RUN_USER",
    "Distribution",
    "dist_root",
    "ensure_run_user",
    "java_home",
]

RUN_USER = "resilience-search"
SYSTEM_DIST_ROOT = Path("/var/cache/resilience")
MARKER = ".resilience-installed"


@dataclass(frozen=True)
class Distribution:
    """One search server's integ-test-zip on Maven Central and how its launcher is driven.

    Attributes:
        name: registry name and Maven artifactId (``"elasticsearch"``).
        group: Maven groupId of the integ-test-zip.
        version: the version installed and run.
        env_prefix: prefix of the launcher's variables (``ES`` -> ``ES_JAVA_HOME``...).
        main_class: the server JVM's main class (to find it among the launcher's processes).
        sha256: digest of the zip, checked after every fetch.
        initial_masters_setting: the setting that lists the first election's voters.
        settings: extra lines of the node's YAML config.
    """

    name: str
    group: str
    version: str
    env_prefix: str
    main_class: str
    sha256: str
    initial_masters_setting: str
    settings: Sequence[str] = field(default=())

    @property
    def artifact(self) -> str:
        return f"{self.group}:{self.name}:{self.version}:zip"

    @property
    def home(self) -> Path:
        """Where the distribution is (or will be) unpacked."""
        return dist_root() / f"{self.name}-{self.version}"

    @property
    def launcher(self) -> Path:
        return self.home / "bin" / self.name

    def is_installed(self) -> bool:
        """Unpacked completely and a Java 17 runtime present (no network)."""
        return (self.home / MARKER).is_file() and java_home() is not None

    def install(self) -> str:
        """Install Java 17 and Maven if missing, fetch the zip, unpack it, create the user.

        Idempotent and cached (the zip in Maven's local repository, the tree under
        :func:`dist_root`). ``$RESILIENCE_MAVEN_REPO`` sets Maven's local repository.

        Raises:
            InstallError: names the failed step, its command and the tail of its output.
        """
        with install_lock(self.name):
            done = [_ensure_java(self.name)]
            if (self.home / MARKER).is_file():
                done.append(f"{self.name} {self.version} already at {self.home}")
            else:
                done.append(_ensure_maven(self.name))
                self._fetch_and_unpack()
                done.append(f"{self.name} {self.version} unpacked to {self.home}")
            if os.geteuid() == 0:
                done.append(ensure_run_user())
            return "; ".join(done)

    def _fetch(self, dest: Path) -> Path:
        """Copy the zip out of Maven's local repository (downloading it) and check it.

        The Elasticsearch zip has no checksum files on Maven Central, so Maven cannot
        verify it: the SHA-256 pinned here does. A mismatch removes the cached copy, so a
        retry downloads it again.
        """
        repo = os.environ.get("RESILIENCE_MAVEN_REPO")
        cmd = [
            "mvn",
            "-B",
            "-q",
            "dependency:copy",
            f"-Dartifact={self.artifact}",
            f"-DoutputDirectory={dest}",
        ]
        if repo:
            cmd.append(f"-Dmaven.repo.local={repo}")
        run_step(self.name, cmd, timeout=900)
        zip_path = dest / f"{self.name}-{self.version}.zip"
        digest = hashlib.sha256(zip_path.read_bytes()).hexdigest()
        if digest != self.sha256:
            local = Path(repo) if repo else Path.home() / ".m2" / "repository"
            cached = local.joinpath(*self.group.split("."), self.name, self.version, zip_path.name)
            cached.unlink(missing_ok=True)
            zip_path.unlink()
            raise InstallError(
                self.name,
                f"{self.artifact} has SHA-256 {digest}, expected "
                f"{self.sha256}; removed the cached copy {cached}",
            )
        return zip_path

    def _fetch_and_unpack(self) -> None:
        root = dist_root()
        root.mkdir(parents=True, exist_ok=True)
        if root == SYSTEM_DIST_ROOT:
            root.chmod(0o755)  # the run user must reach the unpacked tree
        with tempfile.TemporaryDirectory(prefix=f".{self.name}-", dir=root) as tmp:
            zip_path = retry(lambda: self._fetch(Path(tmp)), what=f"fetch {self.artifact}")
            unpacked = Path(tmp) / "unpacked"
            try:
                _unzip(zip_path, unpacked)
            except (OSError, zipfile.BadZipFile) as exc:
                raise InstallError(self.name, f"cannot unpack {zip_path}: {exc}") from exc
            top = unpacked / f"{self.name}-{self.version}"
            if not (top / "bin" / self.name).is_file():
                raise InstallError(self.name, f"{zip_path} has no bin/{self.name}")
            (top / MARKER).write_text(f"{self.artifact}\n")
            shutil.rmtree(self.home, ignore_errors=True)  # a half-done earlier attempt
            top.rename(self.home)


def dist_root() -> Path:
    """Where distributions are unpacked: readable by :data:`RUN_USER` (see module doc)."""
    cache = home()
    if os.geteuid() != 0 or _searchable_by_others(cache):
        return cache
    return SYSTEM_DIST_ROOT


def _searchable_by_others(path: Path) -> bool:
    return all(p.stat().st_mode & stat.S_IXOTH for p in (path, *path.parents))


def _ensure_java(server: str) -> str:
    if java_home() is not None:
        return f"Java at {java_home()}"
    return apt_install(server, ["openjdk-17-jre-headless"])


def _ensure_maven(server: str) -> str:
    if shutil.which("mvn") is not None:
        return "Maven present"
    return apt_install(server, ["maven"])


def _unzip(zip_path: Path, dest: Path) -> None:
    """Unpack keeping executable bits (zipfile drops them), everything readable by others."""
    with zipfile.ZipFile(zip_path) as zf:
        for info in zf.infolist():
            target = Path(zf.extract(info, dest))
            mode = info.external_attr >> 16
            if info.is_dir():
                target.chmod(0o755)
            else:
                target.chmod(0o755 if mode & 0o111 else 0o644)


def ensure_run_user() -> str:
    """Create the system user and group :data:`RUN_USER` if missing (idempotent, root only).

    Raises:
        InstallError: groupadd or useradd failed.
    """
    try:
        pwd.getpwnam(RUN_USER)
        return f"user {RUN_USER} exists"
    except KeyError:
        pass
    try:
        grp.getgrnam(RUN_USER)
    except KeyError:
        _tolerate_exists(["groupadd", "--system", RUN_USER])
    _tolerate_exists(
        [
            "useradd",
            "--system",
            "--gid",
            RUN_USER,
            "--no-create-home",
            "--home-dir",
            "/nonexistent",
            "--shell",
            "/usr/sbin/nologin",
            RUN_USER,
        ]
    )
    return f"created system user {RUN_USER}"


def _tolerate_exists(cmd: list[str]) -> None:
    try:
        run_step(RUN_USER, cmd, timeout=60)
    except InstallError as exc:  # exit 9: another process created it meanwhile
        if "status 9" not in str(exc):
            raise
