"""The OpenAPI 3.1 description of HQ's JSON API (/api/v1), served at /api/v1/openapi.json.

A document only: the handlers are in `hq.api`; keep the two in step (a test checks every route is described).
"""

from __future__ import annotations

from typing import Any

from gateway import wire
from hq.query_params import DEFAULT_LIMIT, ISO_EXPECTED, MAX_LIMIT

_TIME = {"type": ["string", "null"], "format": "date-time", "description": "UTC, ISO 8601 with a Z suffix"}
_ERROR = {
    "type": "object",
    "required": ["error"],
    "properties": {
        "error": {"type": "string", "description": "What was wrong"},
        "parameter": {"type": "string", "description": "The query parameter at fault"},
        "expected": {"type": "string", "description": "What the parameter should look like"},
    },
}
_GATEWAY = {
    "type": "object",
    "properties": {
        "gateway_id": {"type": "string"},
        "clinic_id": {"type": "string"},
        "status": {"enum": ["online", "offline"]},
        "last_contact": {**_TIME, "description": "When HQ last heard the gateway itself (null: never)"},
        "first_seen": _TIME,
        "backlog": {"type": "integer", "description": "Entries buffered on the gateway, all lanes"},
        "backlog_by_lane": {
            "type": "object",
            "description": "Per lane (alarm, consult, vitals, backlog, bulk): count and oldest entry time",
            "additionalProperties": {"type": "object", "properties": {"count": {"type": "integer"},
                                                                      "oldest": _TIME}},
        },
        "devices": {"type": "array", "items": {"type": "object", "properties": {
            "device_id": {"type": "string"}, "protocol": {"type": "string"}, "source": {"type": "string"},
            "state": {"enum": ["ok", "silent", "disconnected"]}, "last_seen": _TIME}}},
        "software": {"type": "string"},
        "started": _TIME,
        "committed_seq": {"type": "integer", "description": "Highest sequence number HQ holds"},
        "complete_below": {"type": "integer", "description":
                           "HQ holds every sequence number below this one (or its gap record); a replay "
                           "after a database restore starts here"},
    },
}
_OBSERVATION = {
    "type": "object",
    "properties": {
        "kind": {"enum": sorted(wire.KINDS)},
        "metric": {"type": "string", "description": "MDC reference id, e.g. MDC_PULS_OXIM_SAT_O2"},
        "value": {"type": ["number", "null"]},
        "unit": {"type": ["string", "null"], "description": "UCUM"},
        "time": {**_TIME, "description": "The source device's own time"},
        "patient_id": {"type": ["string", "null"]},
        "device_id": {"type": "string"},
        "clinic_id": {"type": "string"},
        "gateway_id": {"type": "string"},
        "seq": {"type": "integer", "description": "Gateway-unique sequence number"},
        "received": {**_TIME, "description": "When the gateway received it"},
        "ingested": {**_TIME, "description": "When HQ committed it"},
        "alarm": {"type": "object", "description": "Alarms only: event, text, priority, state. Forwarded "
                  "alarms are secondary and informational; the bedside monitor is the primary alarm system."},
        "extra": {"type": "object", "description": "Other kinds: waveform samples, gap or device event details"},
    },
}


_FIELD_ERROR = {
    "type": "object",
    "required": ["error", "field", "reason"],
    "properties": {
        "error": {"type": "string", "description": "What was wrong, for people"},
        "field": {"type": "string", "description": "The request field at fault, e.g. token, csr, gateway_id"},
        "reason": {"type": "string", "description": "A stable code for programs, e.g. expired, used, unknown, "
                   "revoked, cn_mismatch, bad_csr, invalid, missing"},
    },
}
_PEM = {"type": "string", "description": "PEM text"}
_COORDINATOR = ("For coordinators (and admins). Until HQ's accounts are deployed this endpoint is not "
                "authenticated.")


def _json_body(schema: dict[str, Any], required: list[str]) -> dict[str, Any]:
    return {"required": True, "content": {"application/json": {"schema": {
        "type": "object", "required": required, "properties": schema}}}}


def _refused(description: str) -> dict[str, Any]:
    return _ok(_FIELD_ERROR, description)


def _fleet_admin_paths() -> dict[str, Any]:
    gateway_id = {"name": "gateway_id", "in": "path", "required": True, "schema": {"type": "string"}}
    return {
        "/api/v1/enrolment": {"post": {
            "summary": "A new gateway trades its one-time token and certificate request for its certificate",
            "description": "The token is spent by the first request that succeeds, also when several present it at "
                           "once. A request refused for its CSR (wrong CN, bad key) does not spend the token. The "
                           "private key never leaves the gateway: only the CSR is sent.",
            "requestBody": _json_body({
                "token": {"type": "string", "description": "The enrolment token a coordinator created"},
                "csr": {**_PEM, "description": "PKCS#10 request, subject exactly CN=<gateway id the token is "
                                               "for>, EC P-256/P-384 or RSA 2048-8192 key"}}, ["token", "csr"]),
            "responses": {
                "200": _ok({"type": "object", "properties": {
                    "gateway_id": {"type": "string"}, "clinic_id": {"type": "string"},
                    "serial": {"type": "string", "description": "Certificate serial number, hexadecimal"},
                    "not_after": _TIME,
                    "certificate_chain": {**_PEM, "description": "The gateway's certificate (and any "
                                                                 "intermediates): its [mqtt] cert_file"},
                    "ca_bundle": {**_PEM, "description": "The fleet CA: its [mqtt] ca_file"}}}),
                "400": _refused("The CSR or the body is not acceptable (reason bad_csr, cn_mismatch, invalid, "
                                "missing)"),
                "403": _refused("The token is unknown, or its gateway was revoked"),
                "409": _refused("The token was already used"),
                "410": _refused("The token has expired"),
                "503": _ok(_ERROR, "HQ's certificate authority is not usable"),
            },
        }},
        "/api/v1/enrolment-tokens": {"post": {
            "summary": "Create a one-time enrolment token for a gateway (shown once)",
            "description": f"{_COORDINATOR} HQ stores only the token's SHA-256: the response is the one "
                           "chance to copy it. A revoked gateway id cannot get a token.",
            "requestBody": _json_body({
                "gateway_id": {"type": "string", "description": "The gateway's id, its certificate's CN; must not "
                                                                "start with 'hq-'"},
                "clinic_id": {"type": "string"},
                "ttl_h": {"type": "number", "description": "Hours the token is valid; at most enrolment.token_ttl_h "
                                                           "(the default)"}}, ["gateway_id", "clinic_id"]),
            "responses": {
                "201": _ok({"type": "object", "properties": {
                    "token": {"type": "string"}, "token_id": {"type": "integer"}, "gateway_id": {"type": "string"},
                    "clinic_id": {"type": "string"}, "expires": _TIME,
                    "enrol_command": {"type": "string"}}}, "Created"),
                "400": _refused("A field is missing or invalid"),
                "403": _refused("The gateway was revoked (reason revoked)"),
                "409": _refused("The gateway belongs to another clinic"),
            },
        }},
        "/api/v1/gateways/{gateway_id}/revoke": {"post": {
            "summary": "Revoke a gateway: its certificates, its unused tokens and its id, for good",
            "description": f"{_COORDINATOR} The broker drops the gateway's connection and denies it every topic "
                           "at once (when [mqtt] dynamic_security is on; `broker.state` says whether it confirmed), "
                           "and the CRL is rewritten so that its certificate fails every later TLS handshake "
                           "once the broker reloads it. Revoking again changes nothing.",
            "parameters": [gateway_id],
            "requestBody": {"required": False, "content": {"application/json": {"schema": {
                "type": "object", "properties": {"reason": {"type": "string", "maxLength": 500}}}}}},
            "responses": {
                "200": _ok({"type": "object", "properties": {
                    "gateway_id": {"type": "string"}, "revoked": _TIME, "already_revoked": {"type": "boolean"},
                    "certificates_revoked": {"type": "array", "items": {"type": "string"}},
                    "broker": {"type": "object", "properties": {
                        "state": {"enum": ["applied", "pending", "not_configured"]}, "applied": _TIME,
                        "error": {"type": "string"}}},
                    "crl": {"type": "object", "properties": {"written": {"type": "boolean"},
                                                             "error": {"type": "string"}}}}}),
                "400": _refused("Not a gateway id"),
                "404": _refused("No gateway, certificate or token has this id (reason not_found)"),
            },
        }},
        "/api/v1/ca/crl.pem": {"get": {
            "summary": "The fleet CA's current certificate revocation list (PEM), for brokers on other hosts",
            "responses": {"200": {"description": "The CRL", "content": {"application/x-pem-file": {
                "schema": {"type": "string"}}}}, "404": _ok(_ERROR, "No CA yet")},
        }},
    }


def _param(name: str, description: str, schema: dict[str, Any] | None = None) -> dict[str, Any]:
    return {"name": name, "in": "query", "required": False, "description": description,
            "schema": schema or {"type": "string"}}


def _ok(schema: dict[str, Any], description: str = "OK") -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _bad_request() -> dict[str, Any]:
    return _ok(_ERROR, "A parameter is invalid; the body names it and what was expected")


def openapi_document() -> dict[str, Any]:
    return {
        "openapi": "3.1.0",
        "info": {"title": "Clinic HQ API", "version": "1.0.0",
                 "description": "Fleet status and vital signs replicated from clinic gateways. Times are UTC."},
        "paths": {
            "/api/v1/gateways": {"get": {
                "summary": "Every gateway with its status, backlog and devices",
                "parameters": [_param("clinic_id", "Only this clinic's gateways")],
                "responses": {"200": _ok({"type": "object", "properties": {
                    "gateways": {"type": "array", "items": _GATEWAY}}})},
            }},
            "/api/v1/clinics": {"get": {
                "summary": "Every clinic with its gateway counts",
                "responses": {"200": _ok({"type": "object", "properties": {"clinics": {"type": "array", "items": {
                    "type": "object", "properties": {"clinic_id": {"type": "string"}, "name": {"type": "string"},
                                                     "gateways": {"type": "integer"},
                                                     "gateways_online": {"type": "integer"}}}}}})},
            }},
            "/api/v1/observations": {"get": {
                "summary": "Stored readings, filtered",
                "description": (
                    "Ordered by the source's time, newest first by default (order=desc) so that `limit` "
                    "keeps the latest readings; order=asc returns the oldest first from `since`. "
                    "Unknown parameters are rejected with 400."
                ),
                "parameters": [
                    _param("gateway_id", "Only readings from this gateway"),
                    _param("patient_id", "Only readings of this patient"),
                    _param("metric", "Only this metric (MDC reference id)"),
                    _param("kind", "Only this kind", {"enum": sorted(wire.KINDS)}),
                    _param("since", f"Source time at or after this; {ISO_EXPECTED}",
                           {"type": "string", "format": "date-time"}),
                    _param("until", f"Source time before this; {ISO_EXPECTED}",
                           {"type": "string", "format": "date-time"}),
                    _param("limit", f"At most this many (default {DEFAULT_LIMIT})",
                           {"type": "integer", "minimum": 1, "maximum": MAX_LIMIT, "default": DEFAULT_LIMIT}),
                    _param("order", "desc: newest first (default); asc: oldest first",
                           {"enum": ["asc", "desc"], "default": "desc"}),
                ],
                "responses": {
                    "200": _ok({"type": "object", "properties": {
                        "observations": {"type": "array", "items": _OBSERVATION},
                        "order": {"enum": ["asc", "desc"]}, "limit": {"type": "integer"}}}),
                    "400": _bad_request(),
                },
            }},
            "/api/v1/patients/{patient_id}/vitals": {"get": {
                "summary": "The latest reading of each metric for a patient (kind observation)",
                "parameters": [{"name": "patient_id", "in": "path", "required": True, "schema": {"type": "string"}}],
                "responses": {"200": _ok({"type": "object", "properties": {
                    "patient_id": {"type": "string"},
                    "vitals": {"type": "array", "items": _OBSERVATION,
                               "description": "One per metric; empty if HQ holds no readings for the patient"}}})},
            }},
            "/api/v1/openapi.json": {"get": {"summary": "This document",
                                             "responses": {"200": _ok({"type": "object"})}}},
            **_fleet_admin_paths(),
        },
    }
