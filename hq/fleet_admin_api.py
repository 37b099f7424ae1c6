"""The JSON API of fleet administration: a gateway enrols with a one-time token, a coordinator creates tokens,
revokes gateways and changes their HQ-managed settings, the broker's revocation list is published.

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

from gateway import managed_settings
from gateway.wire import valid_gateway_id
from hq import audit, ca, enrolment, gateway_settings, openapi, revocation
from hq.appkeys import CA_FILES, CONFIG, DOWNLINK, ENFORCER, ENGINE, INGEST
from hq.auth import Actor, Role, require
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
    audit.record(conn, f"gateway:{done.gateway_id}", "gateway.enrolled", "gateway", done.gateway_id,
                 clinic_id=done.clinic_id, detail={"serial": done.serial, "superseded": done.superseded})


# ---- tokens (a coordinator) --------------------------------------------------------------------------------
@routes.post("/api/v1/enrolment-tokens")
async def create_token(request: web.Request) -> web.Response:
    actor = await require(request, Role.COORDINATOR)
    try:
        body = await _body(request)
        gateway_id = _text(body, "gateway_id", max_chars=64)
        clinic_id = _text(body, "clinic_id", max_chars=64)
        ttl_h = ttl_h_of(body, request.app[CONFIG].enrolment.token_ttl_h)
    except RequestError as exc:
        return exc.response()
    assert gateway_id is not None and clinic_id is not None
    try:
        issued = await issue_token(request.app, actor, gateway_id, clinic_id, ttl_h)
    except enrolment.EnrolmentError as exc:
        return _refused(exc)
    return web.json_response(token_json(issued), status=201, headers={"Cache-Control": "no-store"})


async def issue_token(app: web.Application, actor: Actor, gateway_id: str, clinic_id: str,
                      ttl_h: float) -> enrolment.IssuedToken:
    """A new token, audited (the API and the console's form). Raises EnrolmentError."""
    def create() -> enrolment.IssuedToken:
        with app[ENGINE].begin() as conn:
            issued = enrolment.create_token(conn, gateway_id, clinic_id, actor=actor.label, now_ms=now_ms(),
                                            ttl_ms=int(ttl_h * 3600_000))
            audit.record(conn, actor, "enrolment_token.created", "gateway", gateway_id, clinic_id=clinic_id,
                         detail={"token_id": issued.token_id, "expires_ms": issued.expires_ms})
        return issued

    return await asyncio.to_thread(create)


def token_json(issued: enrolment.IssuedToken) -> dict[str, Any]:
    return {"token": issued.token, "token_id": issued.token_id, "gateway_id": issued.gateway_id,
            "clinic_id": issued.clinic_id, "expires": iso_from_ms(issued.expires_ms),
            "shown_once": "HQ keeps only a hash of the token: copy it now",
            "enrol_command": "clinic-gateway enrol --config /etc/clinic-gateway/gateway.toml --token-file FILE"}


def ttl_h_of(body: dict[str, Any], most: float) -> float:
    value = body.get("ttl_h", most)
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0.05 <= value <= most:
        raise RequestError("ttl_h", "invalid", f"the field 'ttl_h' must be a number of hours, 0.05-{most:g}")
    return float(value)


# ---- revocation (a coordinator) ----------------------------------------------------------------------------
@routes.post("/api/v1/gateways/{gateway_id}/revoke")
async def revoke(request: web.Request) -> web.Response:
    actor = await require(request, Role.COORDINATOR)
    gateway_id = request.match_info["gateway_id"]
    try:
        if not valid_gateway_id(gateway_id):
            raise RequestError("gateway_id", "invalid", f"{gateway_id!r} is not a gateway id")
        reason = _text(await _body(request), "reason", required=False, max_chars=MAX_REASON_CHARS)
    except RequestError as exc:
        return exc.response()
    outcome = await revoke_gateway(request.app, actor, gateway_id, reason)
    if outcome is None:
        return RequestError("gateway_id", "not_found", f"no gateway, certificate or enrolment token has the id "
                                                     f"{gateway_id!r}").response()
    return web.json_response(outcome)


async def revoke_gateway(app: web.Application, actor: Actor, gateway_id: str,
                         reason: str | None) -> dict[str, Any] | None:
    """Revoke, audited; then the CRL, the broker and this worker's ingest. None: HQ never heard of the id."""
    engine = app[ENGINE]
    started_ms = now_ms()

    def record() -> revocation.Revocation | None:
        with engine.begin() as conn:
            clinic_id = _clinic_of(conn, gateway_id)
            if clinic_id is None:
                return None
            done = revocation.revoke(conn, gateway_id, actor=actor.label, reason=reason, now_ms=started_ms)
            if not done.already:
                audit.record(conn, actor, "gateway.revoked", "gateway", gateway_id, clinic_id=clinic_id,
                             detail={"reason": reason, "certificates": done.certificates})
            return done

    done = await asyncio.to_thread(record)
    if done is None:
        return None
    app[INGEST].refused_gateways.add(gateway_id)
    crl_error = await _publish_crl(app)
    broker = await _tell_broker(app, gateway_id)
    if not done.already:
        log.warning("gateway %s revoked by %s (%d certificate(s)); broker: %s", gateway_id, actor.label,
                    len(done.certificates), broker["state"])
    return {
        "gateway_id": gateway_id, "revoked": iso_from_ms(done.revoked_ms), "already_revoked": done.already,
        "certificates_revoked": done.certificates, "broker": broker,
        "crl": {"written": crl_error is None, **({"error": crl_error} if crl_error else {})},
    }


def _clinic_of(conn: sa.Connection, gateway_id: str) -> str | None:
    """The gateway's clinic, from whatever HQ knows of it; None: HQ never heard of this gateway id."""
    for column, clinic in ((gateways.c.id, gateways.c.clinic_id),
                           (gateway_certificates.c.gateway_id, gateway_certificates.c.clinic_id),
                           (enrolment_tokens.c.gateway_id, enrolment_tokens.c.clinic_id)):
        found = conn.execute(sa.select(clinic).where(column == gateway_id).limit(1)).scalar()
        if found is not None:
            return str(found)
    return None


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


# ---- HQ-managed settings (a coordinator) ---------------------------------------------------------------------
class SettingsRefused(Exception):
    def __init__(self, status: int, field: str, reason: str, message: str) -> None:
        super().__init__(message)
        self.status, self.field, self.reason = status, field, reason

    def to_json(self) -> dict[str, str]:
        return {"error": str(self), "field": self.field, "reason": self.reason}


async def change_settings(app: web.Application, actor: Actor, gateway_id: str, doc: Any) -> int:
    """A new version of the gateway's HQ-managed settings, audited and queued on the downlink; the version.
    Raises SettingsRefused (an invalid value, an unknown or revoked gateway, a device it does not have)."""
    try:
        settings = managed_settings.parse(doc)
    except ValueError as exc:
        raise SettingsRefused(400, "settings", "invalid", str(exc)) from None

    def record() -> int:
        with app[ENGINE].begin() as conn:
            row = conn.execute(sa.select(gateways.c.clinic_id, gateways.c.devices_json)
                               .where(gateways.c.id == gateway_id)).first()
            if row is None:
                raise SettingsRefused(404, "gateway_id", "not_found", f"no gateway {gateway_id!r} has reported to HQ")
            if enrolment.is_revoked(conn, gateway_id):
                raise SettingsRefused(409, "gateway_id", "revoked", f"gateway {gateway_id!r} was revoked")
            serial = sorted(str(d.get("device_id")) for d in row.devices_json or []
                            if not str(d.get("source", "")).startswith("tcp://"))
            unknown = sorted(set(settings.silent_after_s) - set(serial))
            if unknown:
                raise SettingsRefused(400, "settings", "invalid", f"serial.{unknown[0]}: gateway {gateway_id!r} "
                                      f"reports no serial device {unknown[0]!r} (it has {', '.join(serial) or 'none'})")
            version = gateway_settings.new_version(conn, gateway_id, settings, actor=actor.label, now_ms=now_ms())
            audit.record(conn, actor, "gateway.settings.changed", "gateway", gateway_id, clinic_id=row.clinic_id,
                         detail={"version": version, "settings": settings.to_json()})
            return version

    try:
        version = await asyncio.to_thread(record)
    except sa.exc.IntegrityError:
        raise SettingsRefused(409, "settings", "conflict", "another coordinator changed this gateway's settings at "
                              "the same moment; look at its versions and try again") from None
    app[DOWNLINK].wake()
    log.info("gateway %s: HQ-managed settings v%d queued by %s", gateway_id, version, actor.label)
    return version


@routes.put("/api/v1/gateways/{gateway_id}/settings")
async def put_settings(request: web.Request) -> web.Response:
    actor = await require(request, Role.COORDINATOR)
    gateway_id = request.match_info["gateway_id"]
    try:
        body = await _body(request)
        version = await change_settings(request.app, actor, gateway_id, body)
    except RequestError as exc:
        return exc.response()
    except SettingsRefused as exc:
        return web.json_response(exc.to_json(), status=exc.status)
    return web.json_response({"gateway_id": gateway_id, "version": version, "state": "pending"}, status=202)


@routes.get("/api/v1/gateways/{gateway_id}/settings")
async def get_settings(request: web.Request) -> web.Response:
    await require(request, Role.COORDINATOR)
    gateway_id = request.match_info["gateway_id"]

    def read() -> tuple[int | None, list[dict[str, Any]]]:
        with request.app[ENGINE].connect() as conn:
            running = conn.execute(sa.select(gateways.c.config_version).where(gateways.c.id == gateway_id)).scalar()
            return running, gateway_settings.history(conn, gateway_id)

    running, versions = await asyncio.to_thread(read)
    if running is None:
        return web.json_response({"error": f"no gateway {gateway_id!r}", "field": "gateway_id",
                                  "reason": "not_found"}, status=404)
    return web.json_response({"gateway_id": gateway_id, "running_version": running,
                              "versions": [version_json(v) for v in versions]})


def version_json(row: dict[str, Any]) -> dict[str, Any]:
    return {"version": row["version"], "state": row["state"], "settings": row["settings"],
            "reason": row["reason"], "created": iso_from_ms(row["created_ms"]), "created_by": row["created_by"],
            "answered": iso_from_ms(row["acked_ms"])}


@routes.get("/api/v1/ca/crl.pem")
async def get_crl(request: web.Request) -> web.StreamResponse:
    path = request.app[CA_FILES].crl_path
    if not path.is_file():
        return web.json_response({"error": "no revocation list yet (the CA was not initialised)"}, status=404)
    return web.FileResponse(path, headers={"Content-Type": "application/x-pem-file", "Cache-Control": "no-cache"})


# ---- the OpenAPI description of these routes ---------------------------------------------------------------
_FIELD_ERROR = {
    "type": "object",
    "required": ["error", "field", "reason"],
    "properties": {
        "error": {"type": "string", "description": "What was wrong, for people"},
        "field": {"type": "string", "description": "The request field at fault, e.g. token, csr, gateway_id"},
        "reason": {"type": "string", "description": "A stable code for programs: expired, used, unknown, revoked, "
                   "cn_mismatch, bad_csr, invalid, missing, clinic_mismatch, not_found"},
    },
}
_TIME = {"type": ["string", "null"], "format": "date-time", "description": "UTC, ISO 8601 with a Z suffix"}
_PEM = {"type": "string", "description": "PEM text"}
_COORDINATORS = {"401": openapi.UNAUTHORIZED, "403": openapi.FORBIDDEN}


def _refusal_doc(description: str) -> dict[str, Any]:
    return openapi.ok(_FIELD_ERROR, description)


def _object(properties: dict[str, Any], required: list[str] | None = None) -> dict[str, Any]:
    return {"type": "object", "properties": properties, **({"required": required} if required else {})}


OPENAPI_PATHS: dict[str, Any] = {
    "/api/v1/enrolment": {"post": {
        "summary": "A new gateway trades its one-time token and certificate request for its certificate",
        "description": "Authenticated by the token, not by an account. The token is spent by the first request "
                       "that succeeds, also when several present it at once; a request refused for its CSR (wrong "
                       "CN, bad key) does not spend it. The gateway's private key never leaves it: only the CSR "
                       "is sent. Audited as gateway.enrolled.",
        "security": [],
        "requestBody": openapi.json_body(_object({
            "token": {"type": "string", "description": "The enrolment token a coordinator created"},
            "csr": {**_PEM, "description": "PKCS#10 request, subject exactly CN=<the gateway id of the token>, EC "
                                           "P-256/P-384 or RSA 2048-8192 key"}}, ["token", "csr"])),
        "responses": {
            "200": openapi.ok(_object({
                "gateway_id": {"type": "string"}, "clinic_id": {"type": "string"},
                "serial": {"type": "string", "description": "Certificate serial number, hexadecimal"},
                "not_after": _TIME,
                "certificate_chain": {**_PEM, "description": "The gateway's certificate: its [mqtt] cert_file"},
                "ca_bundle": {**_PEM, "description": "The fleet CA: its [mqtt] ca_file"}})),
            "400": _refusal_doc("The CSR or the body is not acceptable (bad_csr, cn_mismatch, invalid, missing)"),
            "403": _refusal_doc("The token is unknown, or its gateway was revoked"),
            "409": _refusal_doc("The token was already used"),
            "410": _refusal_doc("The token has expired"),
            "503": openapi.ok(openapi.ERROR, "HQ's certificate authority is not usable"),
        },
    }},
    "/api/v1/enrolment-tokens": {"post": {
        "summary": "Create a one-time enrolment token for a gateway (coordinators; shown once; audited)",
        "description": "HQ stores only the token's SHA-256: the response is the one chance to copy it. A revoked "
                       "gateway id cannot get one.",
        "requestBody": openapi.json_body(_object({
            "gateway_id": {"type": "string", "description": "The gateway's id, its certificate's CN; must not "
                                                            "start with 'hq-'"},
            "clinic_id": {"type": "string"},
            "ttl_h": {"type": "number", "description": "Hours the token is valid; at most enrolment.token_ttl_h "
                                                       "(the default)"}}, ["gateway_id", "clinic_id"])),
        "responses": {
            "201": openapi.ok(_object({
                "token": {"type": "string"}, "token_id": {"type": "integer"}, "gateway_id": {"type": "string"},
                "clinic_id": {"type": "string"}, "expires": _TIME, "enrol_command": {"type": "string"}}),
                "Created"),
            "400": _refusal_doc("A field is missing or invalid"),
            "403": _refusal_doc("The gateway was revoked (revoked), or the user is not a coordinator"),
            "409": _refusal_doc("The gateway belongs to another clinic"),
            "401": openapi.UNAUTHORIZED,
        },
    }},
    "/api/v1/gateways/{gateway_id}/revoke": {"post": {
        "summary": "Revoke a gateway: its certificates, its unused tokens and its id, for good (coordinators; "
                   "audited)",
        "description": "The broker drops the gateway's connection and denies it every topic at once (with [mqtt] "
                       "dynamic_security; `broker.state` says whether it confirmed), and the CRL is rewritten so "
                       "that its certificate fails every later TLS handshake once the broker reloads it. Revoking "
                       "again changes nothing.",
        "parameters": [openapi.path_param("gateway_id", "The gateway")],
        "requestBody": {"required": False, "content": {"application/json": {"schema": _object({
            "reason": {"type": "string", "maxLength": MAX_REASON_CHARS}})}}},
        "responses": {
            "200": openapi.ok(_object({
                "gateway_id": {"type": "string"}, "revoked": _TIME, "already_revoked": {"type": "boolean"},
                "certificates_revoked": {"type": "array", "items": {"type": "string"}},
                "broker": _object({"state": {"enum": ["applied", "pending", "not_configured"]}, "applied": _TIME,
                                   "error": {"type": "string"}}),
                "crl": _object({"written": {"type": "boolean"}, "error": {"type": "string"}})})),
            "400": _refusal_doc("Not a gateway id"),
            "404": _refusal_doc("No gateway, certificate or token has this id (not_found)"),
            **_COORDINATORS,
        },
    }},
    "/api/v1/gateways/{gateway_id}/settings": {
        "put": {
            "summary": "A new version of the gateway's HQ-managed settings (coordinators; audited)",
            "description": "The body is the complete set of managed values; what it leaves out follows the "
                           "gateway's TOML file. HQ checks the values with the gateway's own rules, sends the "
                           "version over the downlink, and the gateway applies it (durably, at once) or rejects it "
                           "with its reason: see GET.",
            "parameters": [openapi.path_param("gateway_id", "The gateway")],
            "requestBody": openapi.json_body(_object({
                "status": _object({"heartbeat_s": {"type": "number", "minimum": 1, "maximum": 3600}}),
                "outbox": _object({"live_window_s": {"type": "number", "minimum": 5}}),
                "serial": {"type": "object", "description": "Per serial device id",
                           "additionalProperties": _object({"silent_after_s": {
                               "type": "number", "exclusiveMinimum": 0, "maximum": 86400}})}})),
            "responses": {
                "202": openapi.ok(_object({"gateway_id": {"type": "string"}, "version": {"type": "integer"},
                                           "state": {"const": "pending"}}), "Queued for the gateway"),
                "400": _refusal_doc("A value breaks its rule, a key may not be managed, or a device is unknown"),
                "404": _refusal_doc("No such gateway"),
                "409": _refusal_doc("The gateway was revoked, or another change came at the same moment"),
                **_COORDINATORS,
            },
        },
        "get": {
            "summary": "The gateway's HQ-managed settings versions, newest first, with the gateway's answers",
            "parameters": [openapi.path_param("gateway_id", "The gateway")],
            "responses": {
                "200": openapi.ok(_object({
                    "gateway_id": {"type": "string"}, "running_version": {"type": "integer"},
                    "versions": {"type": "array", "items": _object({
                        "version": {"type": "integer"},
                        "state": {"enum": ["pending", "applied", "rejected", "superseded"]},
                        "settings": {"type": "object"}, "reason": {"type": ["string", "null"]},
                        "created": _TIME, "created_by": {"type": "string"}, "answered": _TIME})}})),
                "404": _refusal_doc("No such gateway"),
                **_COORDINATORS,
            },
        },
    },
    "/api/v1/ca/crl.pem": {"get": {
        "summary": "The fleet CA's current certificate revocation list (PEM), for brokers on other hosts",
        "description": "Public, like every CRL.",
        "security": [],
        "responses": {"200": {"description": "The CRL", "content": {"application/x-pem-file": {
            "schema": {"type": "string"}}}}, "404": openapi.ok(openapi.ERROR, "No CA yet")},
    }},
}
