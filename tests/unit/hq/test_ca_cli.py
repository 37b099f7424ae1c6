"""`python -m hq ca init | issue | crl`: the CA made once, identities for the broker and HQ's workers."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest
from cryptography import x509

from hq import ca
from hq.__main__ import main


@pytest.fixture
def config(tmp_path: Path) -> Path:
    path = tmp_path / "hq.toml"
    path.write_text(f'[database]\nurl = "sqlite:///{tmp_path / "hq.db"}"\n[ca]\ndir = "{tmp_path / "ca"}"\n')
    return path


def test_init_makes_a_private_ca_and_an_empty_crl(config: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["ca", "init", "--config", str(config)]) == 0
    ca_dir = config.parent / "ca"
    assert stat.S_IMODE((ca_dir / "ca.key").stat().st_mode) == 0o600
    crl = x509.load_pem_x509_crl((ca_dir / "crl.pem").read_bytes())
    assert list(crl) == [] and "created" in capsys.readouterr().out
    assert main(["ca", "init", "--config", str(config)]) == 1
    err = capsys.readouterr().err
    assert "already holds a CA" in err and err.count("\n") == 1


def test_issue_makes_broker_and_hq_identities(config: Path, tmp_path: Path) -> None:
    main(["ca", "init", "--config", str(config)])
    out = tmp_path / "certs"
    assert main(["ca", "issue", "--config", str(config), "--name", "broker", "--server-name", "127.0.0.1",
                 "--out-dir", str(out)]) == 0
    assert main(["ca", "issue", "--config", str(config), "--name", "hq-1", "--out-dir", str(out)]) == 0
    authority = x509.load_pem_x509_certificate((out / "ca.pem").read_bytes())
    for name in ("broker", "hq-1"):
        cert = x509.load_pem_x509_certificate((out / f"{name}.pem").read_bytes())
        assert ca.issued_by(cert, authority) and ca.common_name(cert.subject) == name
        assert stat.S_IMODE((out / f"{name}.key").stat().st_mode) == 0o600


def test_an_hq_identity_must_be_named_hq(config: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    main(["ca", "init", "--config", str(config)])
    assert main(["ca", "issue", "--config", str(config), "--name", "gw-1", "--out-dir", str(tmp_path)]) == 2
    assert "must start with 'hq-'" in capsys.readouterr().err


def test_issue_without_a_ca_says_how_to_make_one(config: Path, tmp_path: Path,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["ca", "issue", "--config", str(config), "--name", "hq-1", "--out-dir", str(tmp_path)]) == 1
    assert "python -m hq ca init" in capsys.readouterr().err


def test_crl_is_written_from_the_database(config: Path, capsys: pytest.CaptureFixture[str]) -> None:
    main(["ca", "init", "--config", str(config)])
    crl_path = config.parent / "ca" / "crl.pem"
    before = x509.load_pem_x509_crl(crl_path.read_bytes())
    assert main(["ca", "crl", "--config", str(config)]) == 0
    after = x509.load_pem_x509_crl(crl_path.read_bytes())
    assert after.last_update_utc > before.last_update_utc  # the broker keeps the newest list it loaded
    assert "0 revoked certificate(s)" in capsys.readouterr().out
