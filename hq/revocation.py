"""Revoking a gateway, and the certificate revocation list (CRL) the broker checks every TLS handshake against.

Revocation is recorded in the database in the caller's transaction; `publish_crl` then writes the CRL of every
revoked certificate, and `hq.broker_control` has the broker drop and deny the gateway at once. Synchronous
SQLAlchemy Core, run in a worker thread.
"""

from __future__ import annotations

import datetime as dt
import time
from dataclasses import dataclass

import sqlalchemy as sa
from cryptography import x509

from hq import ca
from hq.models import enrolment_tokens, gateway_certificates, revoked_gateways


@dataclass(frozen=True)
class Revocation:
    gateway_id: str
    revoked_ms: int
    certificates: list[str]  # serials revoked now
    already: bool  # the gateway was revoked before; nothing changed


def revoke(conn: sa.Connection, gateway_id: str, *, actor: str, reason: str | None, now_ms: int) -> Revocation:
    """Revoke the gateway: every certificate it holds, every token not used yet, and its id for good."""
    existing = conn.execute(sa.select(revoked_gateways.c.revoked_ms)
                            .where(revoked_gateways.c.gateway_id == gateway_id)).scalar()
    if existing is not None:
        return Revocation(gateway_id, int(existing), [], True)
    conn.execute(revoked_gateways.insert().values(gateway_id=gateway_id, revoked_ms=now_ms, revoked_by=actor,
                                                  reason=reason))
    c = gateway_certificates.c
    serials = list(conn.execute(sa.select(c.serial).where(c.gateway_id == gateway_id, c.revoked_ms.is_(None))
                                .order_by(c.issued_ms)).scalars())
    if serials:
        conn.execute(gateway_certificates.update().where(c.serial.in_(serials))
                     .values(revoked_ms=now_ms, revoke_reason="revoked"))
    t = enrolment_tokens.c
    # Unused tokens expire now: redeeming one is refused as revoked anyway; this also keeps the record clear.
    conn.execute(enrolment_tokens.update().where(t.gateway_id == gateway_id, t.used_ms.is_(None),
                                                 t.expires_ms > now_ms).values(expires_ms=now_ms))
    return Revocation(gateway_id, now_ms, serials, False)


def revoked_certificates(engine: sa.Engine, now: dt.datetime) -> list[tuple[int, dt.datetime]]:
    """(serial, revocation time) of every revoked certificate that has not expired yet (an expired certificate
    is refused anyway, so the list does not grow for ever)."""
    c = gateway_certificates.c
    now_ms = int(now.timestamp() * 1000)
    q = sa.select(c.serial, c.revoked_ms).where(c.revoked_ms.is_not(None), c.not_after_ms > now_ms)
    with engine.connect() as conn:
        return [(int(serial, 16), dt.datetime.fromtimestamp(ms / 1000, dt.UTC)) for serial, ms in conn.execute(q)]


def crl_due(crl: x509.CertificateRevocationList | None, *, now: dt.datetime, crl_days: int) -> bool:
    """Whether a fresh CRL must be written: none yet, or half its validity gone (an expired CRL makes the
    broker refuse every client, so it is renewed long before)."""
    if crl is None or crl.next_update_utc is None:
        return True
    return crl.next_update_utc - now < dt.timedelta(days=crl_days) / 2


def publish_crl(engine: sa.Engine, files: ca.CaFiles, authority: ca.Authority, *, now: dt.datetime,
                crl_days: int) -> x509.CertificateRevocationList:
    """Write the CRL of every revoked certificate to `files.crl_path`, for the broker to load.

    Under the CA directory's lock: two revocations at once must not let the older list be written last.
    """
    with files.locked():
        revoked = revoked_certificates(engine, now)
        previous = files.read_crl()
        # `is not None`: a CRL listing nothing has len() 0 and is falsy
        last_update = ca.crl_last_update(previous.last_update_utc if previous is not None else None, now)
        ahead_s = (last_update - dt.datetime.now(dt.UTC)).total_seconds()
        if ahead_s > 0:  # hundreds of lists within minutes: wait rather than publish one not valid yet
            time.sleep(ahead_s)
        crl = ca.build_crl(authority, revoked, last_update=last_update,
                           next_update=last_update + dt.timedelta(days=crl_days))
        files.write_crl(crl)
    return crl


def pending_broker(engine: sa.Engine) -> list[str]:
    """Revoked gateways the broker has not confirmed yet."""
    r = revoked_gateways.c
    with engine.connect() as conn:
        return list(conn.execute(sa.select(r.gateway_id).where(r.broker_applied_ms.is_(None))
                                 .order_by(r.revoked_ms)).scalars())


def all_revoked(engine: sa.Engine) -> list[str]:
    with engine.connect() as conn:
        return list(conn.execute(sa.select(revoked_gateways.c.gateway_id).order_by(revoked_gateways.c.gateway_id))
                    .scalars())


def mark_broker_applied(engine: sa.Engine, gateway_ids: list[str], at_ms: int) -> None:
    with engine.begin() as conn:
        conn.execute(revoked_gateways.update().where(revoked_gateways.c.gateway_id.in_(gateway_ids),
                                                     revoked_gateways.c.broker_applied_ms.is_(None))
                     .values(broker_applied_ms=at_ms))
