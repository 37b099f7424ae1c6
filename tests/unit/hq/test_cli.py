"""`clinic-hq serve --config PATH --check-config`: valid files pass, invalid ones give one line and exit 2."""

from __future__ import annotations

from pathlib import Path

import pytest

from hq.__main__ import main


def test_check_config_accepts_a_valid_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "hq.toml"
    path.write_text('[database]\nurl = "sqlite:////tmp/x.db"\n[ingest]\nflush_interval_ms = 20\n')
    assert main(["serve", "--config", str(path), "--check-config"]) == 0
    assert "valid" in capsys.readouterr().out


@pytest.mark.parametrize(("text", "needle"), [
    ("[mqtt]\nport = \"1883\"\n", "hq.toml:2: key 'mqtt.port' = '1883': expected an integer"),
    ("[ingest]\nmax_batch = 5\n", "unknown key 'ingest.max_batch'"),
    ("[database]\nurl = \"mysql://x\"\n", "must start with 'sqlite:///'"),
])
def test_config_errors_are_one_line_and_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                               text: str, needle: str) -> None:
    path = tmp_path / "hq.toml"
    path.write_text(text)
    assert main(["serve", "--config", str(path), "--check-config"]) == 2
    err = capsys.readouterr().err
    assert needle in err and err.count("\n") == 1 and "Traceback" not in err


def test_missing_file_and_missing_secret(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["serve", "--config", str(tmp_path / "absent.toml"), "--check-config"]) == 2
    path = tmp_path / "hq.toml"
    path.write_text(f'[database]\npassword_file = "{tmp_path / "nope"}"\n')
    assert main(["serve", "--config", str(path), "--check-config"]) == 2
    assert "secret file" in capsys.readouterr().err
