"""The gateway's view of its own certificate: the expiry warning, and a renewal picked up from the file."""

from __future__ import annotations

import datetime as dt
import os
from pathlib import Path

from gateway.certificate_watch import CertificateState, CertificateWatch, expiry_warning
from hq import ca

NOW = dt.datetime(2026, 6, 1, tzinfo=dt.UTC)


def test_warnings_come_within_the_renewal_window_and_after_expiry() -> None:
    state = CertificateState(Path("/etc/clinic-gateway/tls/gateway.pem"), "gw-1", "ab",
                             NOW + dt.timedelta(days=40))
    assert expiry_warning(state, now=NOW, warn_days=30) is None
    soon = expiry_warning(state, now=NOW + dt.timedelta(days=28), warn_days=30)
    assert soon is not None and "expires in 12.0 days" in soon and "enrol --renew" in soon
    late = expiry_warning(state, now=NOW + dt.timedelta(days=41), warn_days=30)
    assert late is not None and "expired on 2026-07-11" in late
    broken = CertificateState(Path("x.pem"), error="not a readable PEM certificate")
    assert expiry_warning(broken, now=NOW, warn_days=30) == "certificate x.pem: not a readable PEM certificate"


def test_a_renewed_certificate_is_read_again(tmp_path: Path) -> None:
    authority = ca.new_authority("CA", now=NOW, validity_days=3650)
    path = tmp_path / "gateway.pem"
    _key, first = ca.issue_identity(authority, "gw-1", now=NOW, validity_days=10)
    path.write_bytes(ca.certificate_pem(first))
    watch = CertificateWatch(path, warn_days=30)
    assert watch.state().not_after == first.not_valid_after_utc
    _key, second = ca.issue_identity(authority, "gw-1", now=NOW, validity_days=300)
    renewed = tmp_path / "renewed.pem"
    renewed.write_bytes(ca.certificate_pem(second))
    os.replace(renewed, path)  # as enrolment writes it: a new file in its place
    assert watch.state().not_after == second.not_valid_after_utc
    assert watch.warning(NOW) is None
