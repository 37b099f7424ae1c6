"""Crash-safe file replacement: the mode from the first byte, and a replaced file's owner, group and their bits
kept when asked (a renewal must not take the gateway's group's read access to its key away)."""

from __future__ import annotations

import os
import stat
from pathlib import Path

from gateway.atomic_file import write_atomically


def test_a_new_file_gets_exactly_its_mode(tmp_path: Path) -> None:
    old = os.umask(0o000)
    try:
        write_atomically(tmp_path / "new.key", b"secret", mode=0o600)
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "new.key").stat().st_mode) == 0o600
    assert (tmp_path / "new.key").read_bytes() == b"secret"
    assert [p.name for p in tmp_path.iterdir()] == ["new.key"]  # no temporary file left behind


def test_a_replaced_file_keeps_its_group_bits_but_never_opens_to_others(tmp_path: Path) -> None:
    path = tmp_path / "gateway.key"
    path.write_bytes(b"old")
    path.chmod(0o640)
    write_atomically(path, b"new", mode=0o600, like_existing=True)
    assert stat.S_IMODE(path.stat().st_mode) == 0o640 and path.read_bytes() == b"new"
    path.chmod(0o666)
    write_atomically(path, b"newer", mode=0o600, like_existing=True)
    assert stat.S_IMODE(path.stat().st_mode) == 0o660  # others' bits come from the mode asked for: none
    write_atomically(path, b"plain", mode=0o600)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
