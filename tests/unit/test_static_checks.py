"""The house rules that tools check: ruff clean everywhere, mypy --strict clean packages."""

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", *args], cwd=REPO, capture_output=True, text=True)


def test_ruff_is_clean() -> None:
    proc = run("ruff", "check", ".")
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_packages_type_check_strictly() -> None:
    proc = run("mypy")  # configuration in pyproject.toml: strict, devices + gateway + hq
    assert proc.returncode == 0, proc.stdout + proc.stderr
