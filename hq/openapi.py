"""The OpenAPI 3.1 description of HQ's JSON API (/api/v1), served at /api/v1/openapi.json.

A document only, assembled from the paths each API module declares next to its handlers (`FLEET_PATHS` here
for `hq.api`); `hq.app.create_app` lists them. A test checks that every route is described.
"""

from __future__ import annotations

from typing import Any

from gateway import wire
from hq.query_params import DEFAULT_LIMIT, ISO_EXPECTED, MAX_LIMIT

_TIME = {"type": ["string", "null"], "format": "date-time", "description": "UTC, ISO 8601 with a Z suffix"}
TIME = _TIME  # for the modules that describe their own paths
ERROR = {
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
            "additionalProperties": {"type": "object", "properties": {"count": {"type": "integer"}, "oldest": _TIME}},
        },
        "devices": {
            "type": "array",
            "items": {
                "type": "object",
                "properties": {
                    "device_id": {"type": "string"},
                    "protocol": {"type": "string"},
                    "source": {"type": "string"},
                    "state": {"enum": ["ok", "silent", "disconnected"]},
                    "last_seen": _TIME,
                },
            },
        },
        "software": {"type": "string"},
        "started": _TIME,
        "committed_seq": {"type": "integer", "description": "Highest sequence number HQ holds"},
        "complete_below": {
            "type": "integer",
            "description": "HQ holds every sequence number below this one (or its gap record); a replay "
            "after a database restore starts here",
        },
        "config_version": {"type": "integer", "description": "Version of the HQ-managed settings the gateway "
                           "reports it runs (0: its local TOML file alone)"},
        "config": {
            "type": ["object", "null"],
            "description": "The newest HQ-managed settings version (null: never changed from HQ)",
            "properties": {
                "version": {"type": "integer"},
                "state": {"enum": ["pending", "applied", "rejected", "superseded"]},
                "reason": {"type": ["string", "null"], "description": "Why the gateway rejected it"},
                "changed": _TIME, "answered": _TIME,
                "applied_version": {"type": ["integer", "null"]},
                "summary": {"type": "string"},
            },
        },
        "identity": {
            "type": ["object", "null"],
            "description": "The gateway's newest certificate from HQ's CA (null: never enrolled through HQ)",
            "properties": {
                "serial": {"type": ["string", "null"]},
                "last_enrolment": _TIME,
                "certificate_expires": _TIME,
                "certificate_revoked": _TIME,
                "revoked": {**_TIME, "description": "When the gateway itself was revoked (null: it is not)"},
            },
        },
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
        "alarm": {
            "type": "object",
            "description": "Alarms only: event, text, priority, state. Forwarded "
            "alarms are secondary and informational; the bedside monitor is the primary alarm system.",
        },
        "extra": {"type": "object", "description": "Other kinds: waveform samples, gap or device event details"},
    },
}


def param(name: str, description: str, schema: dict[str, Any] | None = None) -> dict[str, Any]:
    return {
        "name": name,
        "in": "query",
        "required": False,
        "description": description,
        "schema": schema or {"type": "string"},
    }


def ok(schema: dict[str, Any], description: str = "OK") -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def bad_request() -> dict[str, Any]:
    return ok(ERROR, "A parameter is invalid; the body names it and what was expected")


def path_param(name: str, description: str, schema: dict[str, Any] | None = None) -> dict[str, Any]:
    return {
        "name": name,
        "in": "path",
        "required": True,
        "description": description,
        "schema": schema or {"type": "string"},
    }


def json_body(schema: dict[str, Any], description: str = "") -> dict[str, Any]:
    return {"required": True, "description": description, "content": {"application/json": {"schema": schema}}}


UNAUTHORIZED = ok(ERROR, "Not logged in (no session cookie or bearer token)")
FORBIDDEN = ok(ERROR, "The user's role may not do this, or (cookie sessions) the CSRF token is missing")


def openapi_document(paths: dict[str, Any]) -> dict[str, Any]:
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "Clinic HQ API",
            "version": "1.0.0",
            "description": "The clinic chain's HQ: fleet status, vital signs, records, experts, scheduling and "
            "consultations. Times are UTC. Authenticate with a console session (cookie; "
            "unsafe requests also send the session's X-CSRF-Token header) or with "
            "`Authorization: Bearer <token>` (`python -m hq token create`).",
        },
        "components": {
            "securitySchemes": {
                "bearer": {"type": "http", "scheme": "bearer"},
                "session": {"type": "apiKey", "in": "cookie", "name": "hq_session"},
            }
        },
        "security": [{"bearer": []}, {"session": []}],
        "paths": paths,
    }


FLEET_PATHS: dict[str, Any] = {
    "/api/v1/gateways": {
        "get": {
            "summary": "Every gateway with its status, backlog and devices",
            "parameters": [param("clinic_id", "Only this clinic's gateways")],
            "responses": {
                "200": ok({"type": "object", "properties": {"gateways": {"type": "array", "items": _GATEWAY}}})
            },
        }
    },
    "/api/v1/clinics": {
        "get": {
            "summary": "Every clinic with its gateway counts",
            "responses": {
                "200": ok(
                    {
                        "type": "object",
                        "properties": {
                            "clinics": {
                                "type": "array",
                                "items": {
                                    "type": "object",
                                    "properties": {
                                        "clinic_id": {"type": "string"},
                                        "name": {"type": "string"},
                                        "gateways": {"type": "integer"},
                                        "gateways_online": {"type": "integer"},
                                    },
                                },
                            }
                        },
                    }
                )
            },
        }
    },
    "/api/v1/observations": {
        "get": {
            "summary": "Stored readings, filtered",
            "description": (
                "Ordered by the source's time, newest first by default (order=desc) so that `limit` "
                "keeps the latest readings; order=asc returns the oldest first from `since`. "
                "Unknown parameters are rejected with 400. Asking for a patient's readings is audited."
            ),
            "parameters": [
                param("gateway_id", "Only readings from this gateway"),
                param("clinic_id", "Only readings taken at this clinic (clinic staff: always their own)"),
                param("patient_id", "Only readings of this patient"),
                param("metric", "Only this metric (MDC reference id)"),
                param("kind", "Only this kind", {"enum": sorted(wire.KINDS)}),
                param(
                    "since", f"Source time at or after this; {ISO_EXPECTED}", {"type": "string", "format": "date-time"}
                ),
                param("until", f"Source time before this; {ISO_EXPECTED}", {"type": "string", "format": "date-time"}),
                param(
                    "limit",
                    f"At most this many (default {DEFAULT_LIMIT})",
                    {"type": "integer", "minimum": 1, "maximum": MAX_LIMIT, "default": DEFAULT_LIMIT},
                ),
                param(
                    "order",
                    "desc: newest first (default); asc: oldest first",
                    {"enum": ["asc", "desc"], "default": "desc"},
                ),
            ],
            "responses": {
                "200": ok(
                    {
                        "type": "object",
                        "properties": {
                            "observations": {"type": "array", "items": _OBSERVATION},
                            "order": {"enum": ["asc", "desc"]},
                            "limit": {"type": "integer"},
                        },
                    }
                ),
                "400": bad_request(),
            },
        }
    },
    "/api/v1/patients/{patient_id}/vitals": {
        "get": {
            "summary": "The latest reading of each metric for a patient (kind observation)",
            "parameters": [{"name": "patient_id", "in": "path", "required": True, "schema": {"type": "string"}}],
            "responses": {
                "200": ok(
                    {
                        "type": "object",
                        "properties": {
                            "patient_id": {"type": "string"},
                            "vitals": {
                                "type": "array",
                                "items": _OBSERVATION,
                                "description": "One per metric; empty if HQ holds no readings for the patient",
                            },
                        },
                    }
                )
            },
        }
    },
    "/api/v1/openapi.json": {
        "get": {"summary": "This document", "security": [], "responses": {"200": ok({"type": "object"})}}
    },
}
