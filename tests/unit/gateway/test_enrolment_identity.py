"""When `clinic-gateway enrol` has nothing to do: a certificate for this gateway, unexpired, with its key, from
the CA beside it. Anything else is a reason to enrol (or renew)."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

from gateway.enrolment import IdentityPaths, identity_problem
from hq import ca

NOW = dt.datetime(2026, 6, 1, tzinfo=dt.UTC)


def identity(tmp_path: Path, authority: ca.Authority, cn: str = "gw-1", days: int = 30) -> IdentityPaths:
    key, cert = ca.issue_identity(authority, cn, now=NOW, validity_days=days)
    key_path, cert_path = ca.write_identity(tmp_path, "gateway", key, cert)
    (tmp_path / "ca.pem").write_bytes(ca.certificate_pem(authority.certificate))
    return IdentityPaths(key_path, cert_path, tmp_path / "ca.pem")


def test_only_a_complete_valid_identity_counts_as_enrolled(tmp_path: Path) -> None:
    authority = ca.new_authority("Fleet CA", now=NOW, validity_days=3650)
    paths = identity(tmp_path, authority)
    assert identity_problem(paths, "gw-1", NOW) is None
    assert "is for 'gw-1', not this gateway" in str(identity_problem(paths, "gw-2", NOW))
    assert "expired on" in str(identity_problem(paths, "gw-1", NOW + dt.timedelta(days=31)))
    other = identity(tmp_path / "other", authority)
    mismatched = IdentityPaths(other.key_file, paths.cert_file, paths.ca_file)
    assert "is not the key of" in str(identity_problem(mismatched, "gw-1", NOW))
    stranger = ca.new_authority("Another CA", now=NOW, validity_days=3650)
    (tmp_path / "stranger.pem").write_bytes(ca.certificate_pem(stranger.certificate))
    assert "was not issued by the CA" in str(identity_problem(IdentityPaths(paths.key_file, paths.cert_file,
                                                                              tmp_path / "stranger.pem"), "gw-1", NOW))
    assert "no certificate at" in str(identity_problem(IdentityPaths(paths.key_file, tmp_path / "none.pem",
                                                                       paths.ca_file), "gw-1", NOW))
