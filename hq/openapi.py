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
            **_media_paths(),
        },
    }


_RECORDING = {
    "type": "object",
    "properties": {
        "recording_id": {"type": "string"}, "consultation": {"type": "string"}, "gateway_id": {"type": "string"},
        "clinic_id": {"type": "string"},
        "state": {"enum": ["uploading", "complete", "refused"],
                  "description": "uploading: the gateway is sending it (received_bytes of size_bytes so far)"},
        "started": _TIME, "ended": _TIME, "duration_s": {"type": "number"}, "size_bytes": {"type": "integer"},
        "received_bytes": {"type": "integer"}, "sha256": {"type": "string"}, "mime": {"type": "string"},
        "url": {"type": ["string", "null"], "description": "The MP4, once complete; every access is audited"},
    },
}


def _path_param(name: str) -> dict[str, Any]:
    return {"name": name, "in": "path", "required": True, "schema": {"type": "string"}}


def _media_paths() -> dict[str, Any]:
    not_found = _ok(_ERROR, "There is no such consultation or recording")
    figures = {k: {"type": ["number", "null"]} for k in ("rtt_ms", "loss_pct", "jitter_ms", "fps", "kbps")}
    return {
        "/api/v1/consultations/{public_id}/call": {"get": {
            "summary": "A consultation's call: participants, the latest quality figures per stream, alerts",
            "description": "Live updates come over the call page's WebSocket (/consultations/{public_id}/call/ws).",
            "parameters": [_path_param("public_id")],
            "responses": {"200": _ok({"type": "object", "properties": {
                "consultation": {"type": "string"}, "gateway_id": {"type": ["string", "null"]},
                "gateway_online": {"type": "boolean"},
                "participants": {"type": "array", "items": {"type": "object", "properties": {
                    "peer": {"type": "string"}, "name": {"type": "string"}, "role": {"type": "string"},
                    "joined": _TIME, "left": _TIME}}},
                "quality": {"type": "array", "items": {"type": "object", "properties": {
                    "peer": {"type": "string"}, "stream": {"type": "string"}, "kind": {"enum": ["audio", "video"]},
                    "dir": {"enum": ["in", "out"], "description": "out: gateway to participant"}, "time": _TIME,
                    "tier": {"type": ["string", "null"]}, **figures}}},
                "alerts": {"type": "array", "items": {"type": "object", "properties": {
                    "id": {"type": "integer"}, "peer": {"type": "string"}, "stream": {"type": "string"},
                    "kind": {"enum": ["loss", "rtt", "jitter", "low_fps", "disconnected"]},
                    "value": {"type": "number"}, "threshold": {"type": "number"}, "started": _TIME,
                    "ended": _TIME}}}}}), "404": not_found},
        }},
        "/api/v1/consultations/{public_id}/recordings": {"get": {
            "summary": "A consultation's recordings, oldest first",
            "parameters": [_path_param("public_id")],
            "responses": {"200": _ok({"type": "object", "properties": {
                "consultation": {"type": "string"}, "recordings": {"type": "array", "items": _RECORDING}}})},
        }},
        "/api/v1/recordings/{recording_id}": {"get": {
            "summary": "One recording's metadata", "parameters": [_path_param("recording_id")],
            "responses": {"200": _ok(_RECORDING), "404": not_found},
        }},
        "/api/v1/recordings/{recording_id}/media": {"get": {
            "summary": "The recording (MP4; range requests for seeking). Every access is written to the audit log.",
            "parameters": [_path_param("recording_id")],
            "responses": {"200": {"description": "The MP4", "content": {"video/mp4": {}}},
                          "206": {"description": "The requested range", "content": {"video/mp4": {}}},
                          "404": not_found, "410": _ok(_ERROR, "The recording's file is missing at HQ")},
        }},
    }
