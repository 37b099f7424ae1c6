"""How much longer the gateway's own certificate (mqtt.cert_file) is valid, for its status, /healthz and /metrics.

The file is read again whenever it changes on disk (a renewal writes a new one). It does not renew anything:
renewal is `clinic-gateway enrol --renew` with a new token (`gateway.enrolment`).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509

from gateway.tls_identity import common_name

RENEW_HINT = "renew with a new token from HQ: clinic-gateway enrol --renew --config ... --token-file FILE"


@dataclass(frozen=True)
class CertificateState:
    path: Path
    subject: str | None = None
    serial: str | None = None
    not_after: dt.datetime | None = None
    error: str | None = None  # the file could not be read or parsed


def expiry_warning(state: CertificateState, *, now: dt.datetime, warn_days: float) -> str | None:
    """What to tell the operator about the certificate's expiry, or None while it is far off."""
    if state.error is not None:
        return f"certificate {state.path}: {state.error}"
    assert state.not_after is not None
    left = state.not_after - now
    if left <= dt.timedelta(0):
        return f"certificate {state.path} expired on {state.not_after:%Y-%m-%d %H:%M} UTC: the broker refuses it; " \
               + RENEW_HINT
    if left <= dt.timedelta(days=warn_days):
        days = left.total_seconds() / 86400
        return f"certificate {state.path} expires in {days:.1f} days ({state.not_after:%Y-%m-%d} UTC); " + RENEW_HINT
    return None


class CertificateWatch:
    def __init__(self, path: Path, warn_days: float) -> None:
        self.path = path
        self.warn_days = warn_days
        self._stamp: tuple[int, int] | None = None
        self._state = CertificateState(path, error="not read yet")

    def state(self) -> CertificateState:
        try:
            st = self.path.stat()
        except OSError as exc:
            self._stamp = None
            return CertificateState(self.path, error=f"cannot read it: {exc.strerror or exc}")
        stamp = (st.st_ino, st.st_mtime_ns)
        if stamp != self._stamp:
            self._stamp = stamp
            self._state = self._read()
        return self._state

    def _read(self) -> CertificateState:
        try:
            cert = x509.load_pem_x509_certificate(self.path.read_bytes())
        except (OSError, ValueError) as exc:
            return CertificateState(self.path, error=f"not a readable PEM certificate ({exc})")
        return CertificateState(self.path, common_name(cert.subject), format(cert.serial_number, "x"),
                                cert.not_valid_after_utc)

    def warning(self, now: dt.datetime | None = None) -> str | None:
        return expiry_warning(self.state(), now=now or dt.datetime.now(dt.UTC), warn_days=self.warn_days)
