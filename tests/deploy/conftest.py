"""Fixtures of the deployment tests: the release as wheels, one Debian 12 root file system made with
mmdebstrap per test session, a copy-on-write overlay of it per target, and runs of the real playbooks against
them through Ansible's chroot connection.

Tests that need root, mmdebstrap or systemd-nspawn are skipped only with that reason; in CI
(CI=true) a missing prerequisite is a failure instead, so these tests cannot silently not run there.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
ANSIBLE_DIR = REPO / "ansible"
BIN = Path(sys.executable).parent
VERSION = "0.1.0"
MIRROR = os.environ.get("DEBIAN_MIRROR", "http://deb.debian.org/debian")


def require(condition: bool, reason: str) -> None:
    """Skip with `reason` when `condition` fails, except in CI, where it is a failure."""
    if condition:
        return
    if os.environ.get("CI"):
        pytest.fail(f"{reason} (CI must run the deployment tests: `make test` installs what they need)")
    pytest.skip(reason)


def require_root_and(*programs: str) -> None:
    require(os.geteuid() == 0, "needs root (mmdebstrap, chroot, overlay mounts)")
    for program in programs:
        require(shutil.which(program) is not None, f"needs {program} (make system-deps installs it)")


@pytest.fixture(scope="session")
def wheelhouse(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The release the playbooks install: this checkout's wheel and its dependencies' wheels.

    Built from a copy of the sources, so that a stale build/ directory in the checkout cannot leak
    deleted modules into the wheel.
    """
    root = tmp_path_factory.mktemp("release")
    source = root / "src"
    source.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(REPO / name, source / name)
    for package in ("devices", "gateway", "hq"):
        shutil.copytree(REPO / package, source / package, ignore=shutil.ignore_patterns("__pycache__"))
    wheels = root / "wheels"
    done = subprocess.run([sys.executable, "-m", "pip", "wheel", "--quiet", "--wheel-dir", str(wheels), str(source)],
                          capture_output=True, text=True, timeout=600, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    assert (wheels / f"clinic_edge-{VERSION}-py3-none-any.whl").exists(), sorted(p.name for p in wheels.iterdir())
    return wheels


# Speed only, for a root file system that exists for minutes: dpkg without fsync, and no documentation, manual
# pages or translations (what Debian's slim container images leave out too). Kept in the root
# (/etc/dpkg/dpkg.cfg.d/99mmdebstrap), so the packages the roles install are unpacked the same way.
DPKG_OPTIONS = ["force-unsafe-io", "path-exclude=/usr/share/doc/*", "path-exclude=/usr/share/man/*",
                "path-exclude=/usr/share/locale/*", "path-include=/usr/share/locale/locale.alias"]


@pytest.fixture(scope="session")
def bookworm(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A bare Debian 12 (minbase, plus what any Debian server has: systemd and the Python Ansible needs), made
    once per session with mmdebstrap (apt-based: about half of debootstrap's time here).

    Its package lists are kept, so the roles' apt tasks (cache_valid_time) need no update of their own. Tests
    never change it: each target is an overlay on it (`target_root`).
    """
    require_root_and("mmdebstrap", "chroot")
    target = tmp_path_factory.mktemp("bookworm") / "root"
    started = time.monotonic()
    done = subprocess.run(["mmdebstrap", "--quiet", "--variant=minbase", "--include=systemd,python3,python3-apt",
                           "--skip=cleanup/apt/lists", *(f"--dpkgopt={option}" for option in DPKG_OPTIONS),
                           "bookworm", str(target), MIRROR], capture_output=True, text=True, timeout=900,
                          check=False)
    assert done.returncode == 0, f"mmdebstrap failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    print(f"mmdebstrap bookworm minbase: {time.monotonic() - started:.0f} s")
    yield target
    shutil.rmtree(target.parent, ignore_errors=True)


@contextlib.contextmanager
def target_root(pristine: Path, name: str) -> Iterator[Path]:
    """A root file system for one target: an overlay whose lower layer is `pristine` (so nothing is copied and
    `pristine` stays as it was), with a machine id of its own. Unmounted and removed afterwards."""
    base = pristine.parent.parent / name
    upper, work, root = base / "upper", base / "work", base / "root"
    for directory in (upper, work, root):
        directory.mkdir(parents=True)
    subprocess.run(["mount", "-t", "overlay", "overlay", "-o", f"lowerdir={pristine},upperdir={upper},workdir={work}",
                    str(root)], check=True, capture_output=True, timeout=60)
    try:
        (root / "etc/machine-id").write_text(uuid.uuid4().hex + "\n")
        yield root
    finally:
        subprocess.run(["umount", str(root)], check=False, capture_output=True, timeout=60)
        shutil.rmtree(base, ignore_errors=True)


@dataclass(frozen=True)
class PlaybookRun:
    returncode: int
    output: str
    seconds: float

    def recap(self, host: str) -> dict[str, int]:
        match = re.search(rf"^{re.escape(host)}\s*:\s*(.*)$", self.output, re.M)
        assert match, f"no PLAY RECAP for {host}:\n{self.output[-3000:]}"
        return {key: int(value) for key, value in re.findall(r"(\w+)=(\d+)", match.group(1))}

    def changed_tasks(self) -> list[str]:
        """The tasks that reported changes (for a readable assertion on a second run)."""
        tasks, current = [], ""
        for line in self.output.splitlines():
            if line.startswith("TASK ["):
                current = line
            elif line.startswith("changed:"):
                tasks.append(f"{current} {line}")
        return tasks


def run_playbook(playbook: str, inventory: Path, home: Path, *extra: str) -> PlaybookRun:
    env = {**os.environ, "ANSIBLE_CONFIG": str(ANSIBLE_DIR / "ansible.cfg"), "ANSIBLE_NOCOLOR": "1",
           "ANSIBLE_HOME": str(home), "ANSIBLE_LOCAL_TEMP": str(home / "tmp"), "PATH": f"{BIN}:{os.environ['PATH']}"}
    started = time.monotonic()
    done = subprocess.run([str(BIN / "ansible-playbook"), "-i", str(inventory), playbook, *extra],
                          cwd=ANSIBLE_DIR, env=env, capture_output=True, text=True, timeout=900, check=False)
    run = PlaybookRun(done.returncode, done.stdout + done.stderr, time.monotonic() - started)
    logs = sorted(home.glob(f"{playbook}.*.log"))
    (home / f"{playbook}.{len(logs) + 1}.log").write_text(run.output)  # the whole of it, for a failure's reader
    return run


def make_pki(directory: Path, *names: str) -> dict[str, Path]:
    """A test CA and a certificate + key for each name (CN), with openssl: {name}.pem / {name}.key."""
    directory.mkdir(parents=True, exist_ok=True)

    def openssl(*args: str) -> None:
        subprocess.run(["openssl", *args], cwd=directory, check=True, capture_output=True, timeout=60)

    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
    openssl("req", "-x509", *ec, "-keyout", "ca.key", "-out", "ca.pem", "-days", "30", "-subj", "/CN=test fleet CA")
    for name in names:
        openssl("req", *ec, "-keyout", f"{name}.key", "-out", f"{name}.csr", "-subj", f"/CN={name}")
        openssl("x509", "-req", "-in", f"{name}.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial",
                "-out", f"{name}.pem", "-days", "30")
    return {p.name: p for p in directory.iterdir()}
