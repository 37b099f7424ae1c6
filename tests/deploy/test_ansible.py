"""The Ansible code: ansible-lint (production profile) finds nothing, and both playbooks parse against
the example inventory."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from tests.deploy.conftest import ANSIBLE_DIR, BIN


def ansible_env(tmp_home: str) -> dict[str, str]:
    return {**os.environ, "ANSIBLE_CONFIG": str(ANSIBLE_DIR / "ansible.cfg"), "ANSIBLE_NOCOLOR": "1",
            "NO_COLOR": "1", "ANSIBLE_HOME": tmp_home, "PATH": f"{BIN}:{os.environ['PATH']}"}


def test_ansible_lint_is_clean(tmp_path: Path) -> None:
    done = subprocess.run([str(BIN / "ansible-lint"), "--offline", "--nocolor", "--profile", "production"],
                          cwd=ANSIBLE_DIR, env=ansible_env(str(tmp_path)), capture_output=True, text=True,
                          timeout=300, check=False)
    assert done.returncode == 0, done.stdout[-5000:] + done.stderr[-5000:]
    assert "Passed" in done.stderr + done.stdout


@pytest.mark.parametrize("playbook", ["gateway.yml", "hq.yml"])
def test_playbook_syntax(playbook: str, tmp_path: Path) -> None:
    done = subprocess.run([str(BIN / "ansible-playbook"), "--syntax-check", "-i", "inventory/example/hosts.yml",
                           playbook], cwd=ANSIBLE_DIR, env=ansible_env(str(tmp_path)), capture_output=True,
                          text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
