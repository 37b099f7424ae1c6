"""The JSON API of fleet administration: a gateway enrols with a one-time token, a coordinator creates tokens
and revokes gateways, the broker's revocation list is published.

Thin handlers over `hq.enrolment`, `hq.revocation` and `hq.broker_control` (run in threads where they touch the
database or the CA's files). Errors are JSON bodies naming the field at fault: {"error", "field", "reason"}.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from aiohttp import web

from gateway.wire import valid_gateway_id
from hq import ca, enrolment, revocation
from hq.appkeys import CA_FILES, CONFIG, ENFORCER, ENGINE, INGEST
from hq.broker_control import BrokerControlError
from hq.clock import iso_from_ms, now_ms
from hq.models import enrolment_tokens, gateway_certificates, gateways

log = logging.getLogger(__name__)

routes = web.RouteTableDef()

MAX_REASON_CHARS = 500
BROKER_CONFIRM_TIMEOUT_S = 5.0

# HTTP status per refusal reason of an enrolment: the token is at fault (403, 409, 410) or the request (400).
_STATUS = {"unknown": 403, "revoked": 403, "used": 409, "expired": 410, "bad_csr": 400, "cn_mismatch": 400,
           "invalid": 400, "missing": 400, "clinic_mismatch": 409, "not_found": 404}


@dataclass(frozen=True)
class RequestError(Exception):
    field: str
    reason: str
    message: str

    def response(self) -> web.Response:
        return web.json_response({"error": self.message, "field": self.field, "reason": self.reason},
                                 status=_STATUS.get(self.reason, 400))


def _refused(exc: enrolment.EnrolmentError) -> web.Response:
    return RequestError(exc.field, exc.reason, str(exc)).response()


async def _body(request: web.Request) -> dict[str, Any]:
    if not request.can_read_body:
        return {}
    try:
        body = await request.json()
    except ValueError:
        raise RequestError("body", "invalid", "the request body is not JSON") from None
    if not isinstance(body, dict):
        raise RequestError("body", "invalid", "the request body must be a JSON object")
    return body


def _text(body: dict[str, Any], name: str, *, required: bool = True, max_chars: int = 100_000) -> str | None:
    value = body.get(name)
    if value is None:
        if required:
            raise RequestError(name, "missing", f"the field {name!r} is missing")
        return None
    if not isinstance(value, str) or not value.strip() or len(value) > max_chars:
        raise RequestError(name, "invalid", f"the field {name!r} must be a non-empty string of at most "
                                            f"{max_chars} characters")
    return value.strip()


async def coordinator(request: web.Request) -> str:
    """The audit label of the coordinator making the request.

    OPEN UNTIL hq.auth IS ON main: these endpoints are not protected yet. Then this becomes
    `await hq.auth.require(request, Role.COORDINATOR)` and the actor's label.
    """
    return "unauthenticated"


def audit(conn: sa.Connection, actor: str, action: str, target_type: str, target_id: str,
          clinic_id: str | None = None, detail: dict[str, Any] | None = None) -> None:
    """Until hq.audit is on main, a placeholder with its signature: the call sites are in the right transactions."""


# ---- enrolment (the gateway; authenticated by its token) ------------------------------------------------
@routes.post("/api/v1/enrolment")
async def enrol(request: web.Request) -> web.Response:
    try:
        body = await _body(request)
        token = _text(body, "token", max_chars=200)
        csr = _text(body, "csr", max_chars=ca.MAX_CSR_BYTES)
    except RequestError as exc:
        return exc.response()
    assert token is not None and csr is not None
    config = request.app[CONFIG].ca
    files = request.app[CA_FILES]

    def issue() -> tuple[enrolment.Enrolment, bytes]:
        now = dt.datetime.now(dt.UTC)
        authority = files.load_or_create(config.name, now=now, validity_days=config.ca_days)
        done = enrolment.redeem(request.app[ENGINE], token, csr, authority, now=now,
                                validity_days=config.certificate_days, audit=_audit_enrolment)
        if done.superseded:
            revocation.publish_crl(request.app[ENGINE], files, authority, now=now, crl_days=config.crl_days)
        return done, ca.certificate_pem(authority.certificate)

    try:
        done, ca_pem = await asyncio.to_thread(issue)
    except enrolment.EnrolmentError as exc:
        log.warning("enrolment refused (%s): %s", exc.reason, exc)
        return _refused(exc)
    except ca.CaError as exc:
        log.error("enrolment failed: the CA is not usable: %s", exc)
        return web.json_response({"error": f"HQ's certificate authority is not usable: {exc}"}, status=503)
    log.info("gateway %s (clinic %s) enrolled: certificate %s valid until %s", done.gateway_id, done.clinic_id,
             done.serial, iso_from_ms(done.not_after_ms))
    return web.json_response({
        "gateway_id": done.gateway_id, "clinic_id": done.clinic_id, "serial": done.serial,
        "not_after": iso_from_ms(done.not_after_ms),
        "certificate_chain": ca.certificate_pem(done.certificate).decode(),
        "ca_bundle": ca_pem.decode(),
    })


def _audit_enrolment(conn: sa.Connection, done: enrolment.Enrolment) -> None:
    audit(conn, f"gateway:{done.gateway_id}", "gateway.enrolled", "gateway", done.gateway_id, done.clinic_id,
          {"serial": done.serial, "superseded": done.superseded})


# ---- tokens (a coordinator) --------------------------------------------------------------------------------
@routes.post("/api/v1/enrolment-tokens")
async def create_token(request: web.Request) -> web.Response:
    actor = await coordinator(request)
    try:
        body = await _body(request)
        gateway_id = _text(body, "gateway_id", max_chars=64)
        clinic_id = _text(body, "clinic_id", max_chars=64)
        ttl_h = _ttl_h(body, request.app[CONFIG].enrolment.token_ttl_h)
    except RequestError as exc:
        return exc.response()
    assert gateway_id is not None and clinic_id is not None

    def create() -> enrolment.IssuedToken:
        with request.app[ENGINE].begin() as conn:
            issued = enrolment.create_token(conn, gateway_id, clinic_id, actor=actor, now_ms=now_ms(),
                                            ttl_ms=int(ttl_h * 3600_000))
            audit(conn, actor, "enrolment_token.created", "gateway", gateway_id, clinic_id,
                  {"token_id": issued.token_id, "expires_ms": issued.expires_ms})
        return issued

    try:
        issued = await asyncio.to_thread(create)
    except enrolment.EnrolmentError as exc:
        return _refused(exc)
    return web.json_response(token_json(issued), status=201, headers={"Cache-Control": "no-store"})


def token_json(issued: enrolment.IssuedToken) -> dict[str, Any]:
    return {"token": issued.token, "token_id": issued.token_id, "gateway_id": issued.gateway_id,
            "clinic_id": issued.clinic_id, "expires": iso_from_ms(issued.expires_ms),
            "shown_once": "HQ keeps only a hash of the token: copy it now",
            "enrol_command": "clinic-gateway enrol --config /etc/clinic-gateway/gateway.toml --token-file FILE"}


def _ttl_h(body: dict[str, Any], most: float) -> float:
    value = body.get("ttl_h", most)
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0.05 <= value <= most:
        raise RequestError("ttl_h", "invalid", f"the field 'ttl_h' must be a number of hours, 0.05-{most:g}")
    return float(value)


# ---- revocation (a coordinator) ----------------------------------------------------------------------------
@routes.post("/api/v1/gateways/{gateway_id}/revoke")
async def revoke(request: web.Request) -> web.Response:
    actor = await coordinator(request)
    gateway_id = request.match_info["gateway_id"]
    try:
        if not valid_gateway_id(gateway_id):
            raise RequestError("gateway_id", "invalid", f"{gateway_id!r} is not a gateway id")
        reason = _text(await _body(request), "reason", required=False, max_chars=MAX_REASON_CHARS)
    except RequestError as exc:
        return exc.response()
    engine = request.app[ENGINE]
    started_ms = now_ms()

    def record() -> revocation.Revocation | None:
        with engine.begin() as conn:
            if not _known(conn, gateway_id):
                return None
            done = revocation.revoke(conn, gateway_id, actor=actor, reason=reason, now_ms=started_ms)
            if not done.already:
                audit(conn, actor, "gateway.revoked", "gateway", gateway_id, None,
                      {"reason": reason, "certificates": done.certificates})
            return done

    done = await asyncio.to_thread(record)
    if done is None:
        return RequestError("gateway_id", "not_found", f"no gateway, certificate or enrolment token has the id "
                                                     f"{gateway_id!r}").response()
    request.app[INGEST].refused_gateways.add(gateway_id)
    crl_error = await _publish_crl(request.app)
    broker = await _tell_broker(request.app, gateway_id)
    if not done.already:
        log.warning("gateway %s revoked by %s (%d certificate(s)); broker: %s", gateway_id, actor,
                    len(done.certificates), broker["state"])
    return web.json_response({
        "gateway_id": gateway_id, "revoked": iso_from_ms(done.revoked_ms), "already_revoked": done.already,
        "certificates_revoked": done.certificates, "broker": broker,
        "crl": {"written": crl_error is None, **({"error": crl_error} if crl_error else {})},
    })


def _known(conn: sa.Connection, gateway_id: str) -> bool:
    return any(conn.execute(sa.select(sa.literal(1)).where(column == gateway_id).limit(1)).first()
               for column in (gateways.c.id, gateway_certificates.c.gateway_id, enrolment_tokens.c.gateway_id))


async def _publish_crl(app: web.Application) -> str | None:
    """Write the CRL; the error if it could not be (the revocation stands; the next one writes it)."""
    files, config = app[CA_FILES], app[CONFIG].ca

    def write() -> None:
        if not files.exists():
            return  # no CA, so no certificate was ever issued: nothing to list
        now = dt.datetime.now(dt.UTC)
        revocation.publish_crl(app[ENGINE], files, files.load(), now=now, crl_days=config.crl_days)

    try:
        await asyncio.to_thread(write)
    except (ca.CaError, sa.exc.SQLAlchemyError) as exc:
        log.error("revocation list not written: %s", exc)
        return str(exc)
    return None


async def _tell_broker(app: web.Application, gateway_id: str) -> dict[str, Any]:
    enforcer = app.get(ENFORCER)
    if enforcer is None:
        return {"state": "not_configured", "note": "mqtt.dynamic_security is off: the broker refuses the gateway "
                                                   "at its next TLS handshake after it reloads the CRL"}
    try:
        async with asyncio.timeout(BROKER_CONFIRM_TIMEOUT_S):
            at = await enforcer.apply([gateway_id])
    except (BrokerControlError, TimeoutError, sa.exc.SQLAlchemyError) as exc:
        return {"state": "pending", "error": str(exc) or type(exc).__name__,
                "note": "HQ keeps telling the broker until it confirms"}
    return {"state": "applied", "applied": iso_from_ms(at)}


@routes.get("/api/v1/ca/crl.pem")
async def get_crl(request: web.Request) -> web.StreamResponse:
    path = request.app[CA_FILES].crl_path
    if not path.is_file():
        return web.json_response({"error": "no revocation list yet (the CA was not initialised)"}, status=404)
    return web.FileResponse(path, headers={"Content-Type": "application/x-pem-file", "Cache-Control": "no-cache"})
