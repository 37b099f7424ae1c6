"""Enrolment: one-time tokens a coordinator creates for a new gateway, and redeeming one for a certificate.

A token is random, stored only as its SHA-256, bound to a gateway id and clinic, expires, and is used at most
once even when several requests present it at the same moment (a conditional UPDATE claims it). Synchronous
SQLAlchemy Core, run in a worker thread; the certificate itself comes from `hq.ca`.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from cryptography import x509

from gateway.wire import valid_gateway_id
from hq import ca
from hq.models import enrolment_tokens, gateway_certificates, gateways, revoked_gateways

TOKEN_BYTES = 32  # 256 bits: guessing one is hopeless, so an unknown token needs no rate limit of its own
TOKEN_PREFIX = "cgw1_"  # makes a leaked token recognisable in logs and secret scanners


class EnrolmentError(Exception):
    """A request HQ refuses; `field` is the request field at fault, `reason` a stable code for programs."""

    def __init__(self, field: str, reason: str, message: str) -> None:
        super().__init__(message)
        self.field = field
        self.reason = reason

    def to_json(self) -> dict[str, str]:
        return {"error": str(self), "field": self.field, "reason": self.reason}


@dataclass(frozen=True)
class IssuedToken:
    token: str  # shown once; HQ keeps only its hash
    token_id: int
    gateway_id: str
    clinic_id: str
    expires_ms: int


@dataclass(frozen=True)
class Enrolment:
    gateway_id: str
    clinic_id: str
    certificate: x509.Certificate
    serial: str
    superseded: list[str]  # serials of the gateway's earlier certificates, now revoked as superseded

    @property
    def not_after_ms(self) -> int:
        return _ms(self.certificate.not_valid_after_utc)


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def new_token() -> str:
    return TOKEN_PREFIX + secrets.token_urlsafe(TOKEN_BYTES)


def _ms(t: dt.datetime) -> int:
    return int(t.timestamp() * 1000)


def is_revoked(conn: sa.Connection, gateway_id: str) -> bool:
    q = sa.select(revoked_gateways.c.gateway_id).where(revoked_gateways.c.gateway_id == gateway_id)
    return conn.execute(q).first() is not None


def create_token(conn: sa.Connection, gateway_id: str, clinic_id: str, *, actor: str, now_ms: int,
                 ttl_ms: int) -> IssuedToken:
    """A new token for `gateway_id` of `clinic_id`, in the caller's transaction (so the audit entry commits
    with it). Raises EnrolmentError naming the field for an id that cannot be enrolled."""
    try:
        ca.check_gateway_id(gateway_id)
    except ValueError as exc:
        raise EnrolmentError("gateway_id", "invalid", str(exc)) from None
    if not valid_gateway_id(clinic_id):
        raise EnrolmentError("clinic_id", "invalid", f"clinic id {clinic_id!r} must be 1-64 letters, digits, "
                                                     "'-', '_' or '.'")
    if is_revoked(conn, gateway_id):
        raise EnrolmentError("gateway_id", "revoked", f"gateway {gateway_id!r} was revoked and cannot be enrolled "
                                                      "again; enrol its replacement under a new gateway id")
    known = conn.execute(sa.select(gateways.c.clinic_id).where(gateways.c.id == gateway_id)).scalar()
    if known is None:
        known = conn.execute(sa.select(gateway_certificates.c.clinic_id)
                             .where(gateway_certificates.c.gateway_id == gateway_id).limit(1)).scalar()
    if known is not None and known != clinic_id:
        raise EnrolmentError("clinic_id", "clinic_mismatch", f"gateway {gateway_id!r} belongs to clinic {known!r}, "
                                                             f"not {clinic_id!r}")
    token = new_token()
    token_id = conn.execute(enrolment_tokens.insert().values(
        token_hash=hash_token(token), gateway_id=gateway_id, clinic_id=clinic_id, created_ms=now_ms,
        created_by=actor, expires_ms=now_ms + ttl_ms).returning(enrolment_tokens.c.id)).scalar_one()
    return IssuedToken(token, int(token_id), gateway_id, clinic_id, now_ms + ttl_ms)


def _refusal(row: Any | None, revoked: bool, now_ms: int) -> EnrolmentError | None:
    if row is None:
        return EnrolmentError("token", "unknown", "this enrolment token is not known to HQ (mistyped, or from "
                                                  "another HQ); ask a coordinator for a new one")
    if revoked:
        return EnrolmentError("token", "revoked", f"gateway {row.gateway_id!r} was revoked; it cannot enrol again")
    if row.used_ms is not None:
        return EnrolmentError("token", "used", "this enrolment token was already used; each token enrols one "
                                               "gateway once: ask a coordinator for a new one")
    if row.expires_ms <= now_ms:
        return EnrolmentError("token", "expired", "this enrolment token has expired; ask a coordinator for a "
                                                  "new one")
    return None


def redeem(engine: sa.Engine, token: str, csr_pem: str, authority: ca.Authority, *, now: dt.datetime,
           validity_days: int, audit: Callable[[sa.Connection, Enrolment], None] | None = None) -> Enrolment:
    """Sign the gateway's request if the token is valid; the token is spent in the same transaction.

    The token is claimed by the transaction's first statement (UPDATE ... WHERE used_ms IS NULL): on SQLite it
    takes the write lock before reading anything, on PostgreSQL the row lock, so of simultaneous redemptions
    exactly one sees the token unused. A request the CA refuses (wrong CN, bad key) does not spend the token.
    `audit` is called in the transaction, after the certificate is recorded.
    """
    now_ms = _ms(now)
    token_hash = hash_token(token)
    with engine.connect() as conn:
        row = conn.execute(sa.select(enrolment_tokens).where(enrolment_tokens.c.token_hash == token_hash)).first()
        refusal = _refusal(row, row is not None and is_revoked(conn, row.gateway_id), now_ms)
    if refusal is not None:
        raise refusal
    assert row is not None
    try:
        csr = ca.check_csr(csr_pem, row.gateway_id)
    except ca.CsrError as exc:
        raise EnrolmentError("csr", exc.reason, str(exc)) from None
    with engine.begin() as conn:
        t = enrolment_tokens.c
        claimed = conn.execute(enrolment_tokens.update()
                               .where(t.id == row.id, t.used_ms.is_(None), t.expires_ms > now_ms)
                               .values(used_ms=now_ms)).rowcount
        if claimed != 1:
            latest = conn.execute(sa.select(enrolment_tokens).where(t.id == row.id)).first()
            raise _refusal(latest, False, now_ms) or EnrolmentError("token", "used", "token already used")
        if is_revoked(conn, row.gateway_id):  # revoked between the check above and the claim
            raise EnrolmentError("token", "revoked", f"gateway {row.gateway_id!r} was revoked")
        cert = ca.sign(authority, row.gateway_id, csr.public_key(), now=now, validity_days=validity_days)
        serial = ca.serial_hex(cert.serial_number)
        c = gateway_certificates.c
        superseded = list(conn.execute(sa.select(c.serial).where(c.gateway_id == row.gateway_id,
                                                                 c.revoked_ms.is_(None))).scalars())
        if superseded:
            conn.execute(gateway_certificates.update().where(c.serial.in_(superseded))
                         .values(revoked_ms=now_ms, revoke_reason="superseded"))
        conn.execute(gateway_certificates.insert().values(
            serial=serial, gateway_id=row.gateway_id, clinic_id=row.clinic_id, issued_ms=now_ms,
            not_after_ms=_ms(cert.not_valid_after_utc), token_id=row.id))
        conn.execute(enrolment_tokens.update().where(t.id == row.id).values(certificate_serial=serial))
        done = Enrolment(row.gateway_id, row.clinic_id, cert, serial, superseded)
        if audit is not None:
            audit(conn, done)
    return done


def identities(engine: sa.Engine) -> dict[str, dict[str, Any]]:
    """Per gateway id: its newest certificate (serial, issued_ms, not_after_ms, revoked_ms) and whether the
    gateway is revoked; for the fleet page and GET /api/v1/gateways."""
    c = gateway_certificates.c
    newest = (sa.select(c.gateway_id, sa.func.max(c.issued_ms).label("issued_ms"))
              .group_by(c.gateway_id).subquery())
    q = (sa.select(c.gateway_id, c.serial, c.issued_ms, c.not_after_ms, c.revoked_ms)
         .join(newest, sa.and_(c.gateway_id == newest.c.gateway_id, c.issued_ms == newest.c.issued_ms)))
    out: dict[str, dict[str, Any]] = {}
    with engine.connect() as conn:
        for r in conn.execute(q).mappings():
            out[r["gateway_id"]] = {**dict(r), "revoked": None}
        for r in conn.execute(sa.select(revoked_gateways)).mappings():
            out.setdefault(r["gateway_id"], {"gateway_id": r["gateway_id"], "serial": None, "issued_ms": None,
                                             "not_after_ms": None, "revoked_ms": None})["revoked"] = dict(r)
    return out
