"""FHIR R4 Observation: each numeric reading a gateway sent (vital signs), coded in IEEE 11073 MDC and, where one
exists, LOINC (the vital-signs profile's codes), with its UCUM quantity, device, and the HQ patient it belongs
to (through the clinic's record number), read and searched under /api/v1/fhir/Observation.

Building the resource is pure (`observation_resource`); the handlers scope by the patient (`hq.records`), or
by the clinic for readings of no known patient, and audit every read. Ids: "<gateway>.<seq>".
"""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
import re
from collections.abc import Mapping, Sequence
from typing import Any

import sqlalchemy as sa
from aiohttp import web

from devices import codes
from hq import audit, openapi, records
from hq.appkeys import ENGINE
from hq.auth import Actor, require
from hq.console.html import metric_label, unit_label
from hq.fhir import common
from hq.fhir.common import SearchError
from hq.models import gateways, observation_rollups, observations, patient_identifiers

routes = web.RouteTableDef()

SYSTEM_MDC = "urn:iso:std:iso:11073:10101"
SYSTEM_LOINC = "http://loinc.org"
SYSTEM_UCUM = "http://unitsofmeasure.org"
SYSTEM_READING = "urn:clinic-edge:reading"  # gateway/seq, the reading's key at HQ
CATEGORY = {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/observation-category",
                        "code": "vital-signs", "display": "Vital Signs"}], "text": "Vital Signs"}
# The FHIR vital-signs profile's LOINC codes for the metrics the monitors send.
LOINC: dict[str, tuple[str, str]] = {
    "MDC_PULS_OXIM_SAT_O2": ("59408-5", "Oxygen saturation in Arterial blood by Pulse oximetry"),
    "MDC_PULS_OXIM_PULS_RATE": ("8867-4", "Heart rate"),
    "MDC_ECG_HEART_RATE": ("8867-4", "Heart rate"),
    "MDC_PULS_RATE": ("8867-4", "Heart rate"),
    "MDC_PULS_RATE_NON_INV": ("8867-4", "Heart rate"),
    "MDC_RESP_RATE": ("9279-1", "Respiratory rate"),
    "MDC_AWAY_RESP_RATE": ("9279-1", "Respiratory rate"),
    "MDC_PRESS_BLD_NONINV_SYS": ("8480-6", "Systolic blood pressure"),
    "MDC_PRESS_BLD_NONINV_DIA": ("8462-4", "Diastolic blood pressure"),
    "MDC_PRESS_BLD_NONINV_MEAN": ("8478-0", "Mean blood pressure"),
    "MDC_TEMP": ("8310-5", "Body temperature"),
    "MDC_TEMP_BODY": ("8310-5", "Body temperature"),
    "MDC_AWAY_CO2_ET": ("19889-5", "Carbon dioxide [Partial pressure] in Exhaled gas --at end expiration"),
}
FHIR_ID = re.compile(r"[A-Za-z0-9\-.]{1,64}")
MAX_RESULTS = 1000
PARAMS = ("_id", "patient", "subject", "code", "date", "_count")
DATE_PREFIXES = ("ge", "gt", "le", "lt", "eq")




# ---- ids and the resource (pure) ----------------------------------------------------------------
def _hashed(gateway_id: str) -> str:
    return "x" + hashlib.sha1(gateway_id.encode()).hexdigest()[:16]


def observation_id(gateway_id: str, seq: int) -> str:
    """"<gateway>.<seq>"; a gateway id FHIR cannot carry (an underscore, too long) by its hash instead."""
    plain = f"{gateway_id}.{seq}"
    return plain if FHIR_ID.fullmatch(plain) else f"{_hashed(gateway_id)}.{seq}"


def split_id(text: str) -> tuple[str, int] | None:
    head, _, seq = text.rpartition(".")
    return (head, int(seq)) if head and seq.isdigit() else None


def observation_resource(row: Mapping[str, Any], patient_id: int | None) -> dict[str, Any]:
    """`row`: an observations row (kind "observation"); `patient_id`: the HQ patient its record number names."""
    metric, unit = row["metric"], row["unit"]
    coding = [{"system": SYSTEM_MDC, "code": str(codes.metric_code(metric) or metric), "display": metric}]
    if metric in LOINC:
        coding.insert(0, {"system": SYSTEM_LOINC, "code": LOINC[metric][0], "display": LOINC[metric][1]})
    resource: dict[str, Any] = {
        "resourceType": "Observation", "id": observation_id(row["gateway_id"], int(row["seq"])),
        "meta": {"lastUpdated": common.instant(row["hq_ms"])},
        "identifier": [{"system": SYSTEM_READING, "value": f"{row['gateway_id']}/{row['seq']}"}],
        "status": "final", "category": [CATEGORY],
        "code": {"coding": coding, "text": metric_label(metric)},
        "effectiveDateTime": common.instant(row["time_ms"]), "issued": common.instant(row["hq_ms"]),
        "device": {"display": row["device_id"]},
    }
    if patient_id is not None:
        resource["subject"] = common.reference("Patient", patient_id)
    elif row["patient_id"]:
        resource["subject"] = {"identifier": {"system": common.mrn_system(row["clinic_id"]),
                                              "value": row["patient_id"]}}
    if row["value"] is not None:
        quantity: dict[str, Any] = {"value": row["value"]}
        if unit:
            quantity.update(unit=unit_label(unit), system=SYSTEM_UCUM, code=unit)
        resource["valueQuantity"] = quantity
    else:
        resource["dataAbsentReason"] = {"text": "no value"}
    return resource


# ---- search parameters ---------------------------------------------------------------------------
def _metrics_of(code: str) -> set[str]:
    """The metrics a `code` token means: system|code in MDC (numeric or reference id) or LOINC, or a bare one."""
    found: set[str] = set()
    for token in code.split(","):
        system, _, value = token.strip().rpartition("|")
        if system in ("", SYSTEM_LOINC):
            found |= {m for m, (loinc, _) in LOINC.items() if loinc == value}
        if system in ("", SYSTEM_MDC):
            found |= {value} if value.startswith("MDC_") else \
                ({codes.METRICS[int(value)]} if value.isdigit() and int(value) in codes.METRICS else set())
        if system not in ("", SYSTEM_LOINC, SYSTEM_MDC):
            raise SearchError(f"code {token!r}: expected {SYSTEM_MDC}|CODE, {SYSTEM_LOINC}|CODE or a bare code")
    if not found:
        raise SearchError(f"code {code!r} names no metric this server knows")
    return found


def _instant(text: str, name: str) -> int:
    try:
        if len(text) == 10:
            day = dt.date.fromisoformat(text)
            return int(dt.datetime(day.year, day.month, day.day, tzinfo=dt.UTC).timestamp() * 1000)
        value = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise SearchError(f"{name} {text!r}: expected YYYY-MM-DD or an ISO 8601 date-time with offset") from None
    if value.tzinfo is None:
        raise SearchError(f"{name} {text!r}: a date-time needs its UTC offset")
    return int(value.timestamp() * 1000)


def date_range(values: Sequence[str]) -> tuple[int | None, int | None]:
    """[since, until) from date=geX / gtX / leX / ltX / eqX (a date alone means that whole UTC day)."""
    since: int | None = None
    until: int | None = None
    for value in values:
        prefix, text = (value[:2], value[2:]) if value[:2] in DATE_PREFIXES else ("eq", value)
        start = _instant(text, "date")
        end = start + 86_400_000 if len(text) == 10 else start + 1
        if prefix in ("ge", "eq"):
            since = start if since is None else max(since, start)
        if prefix == "gt":
            since = end if since is None else max(since, end)
        if prefix in ("lt",):
            until = start if until is None else min(until, start)
        if prefix in ("le", "eq"):
            until = end if until is None else min(until, end)
    return since, until


# ---- reading -------------------------------------------------------------------------------------
def _gateway_of(conn: sa.Connection, head: str) -> str | None:
    if conn.execute(sa.select(gateways.c.id).where(gateways.c.id == head)).first() is not None:
        return head
    if head.startswith("x"):
        for (gateway_id,) in conn.execute(sa.select(gateways.c.id)):
            if _hashed(gateway_id) == head:
                return str(gateway_id)
    return None


def _patient_of(conn: sa.Connection, clinic_id: str, mrn: str | None) -> int | None:
    return None if mrn is None else records.patient_for_mrn(conn, clinic_id, mrn)


def _read(engine: sa.Engine, actor: Actor, text: str) -> dict[str, Any] | None:
    parts = split_id(text)
    if parts is None:
        return None
    with engine.begin() as conn:
        gateway_id = _gateway_of(conn, parts[0])
        if gateway_id is None:
            return None
        row = conn.execute(sa.select(observations).where(observations.c.gateway_id == gateway_id,
                                                         observations.c.seq == parts[1],
                                                         observations.c.kind == "observation")).mappings().first()
        if row is None:
            return None
        pid = _patient_of(conn, row["clinic_id"], row["patient_id"])
        allowed = records.may_see_patient(conn, actor, pid) if pid is not None else actor.may_see_clinic(
            row["clinic_id"])
        if not allowed:
            return None
        audit.record(conn, actor, "patient.observations.read", "patient", pid if pid is not None else row["patient_id"],
                     clinic_id=row["clinic_id"], detail={"via": "fhir", "observation": text})
        return observation_resource(dict(row), pid)


def _patient_metrics(conn: sa.Connection, keys: Sequence[tuple[str, str]]) -> set[str]:
    """Every metric the patient's readings may have: the known MDC metrics and what their summaries hold."""
    r = observation_rollups
    summed = set(conn.execute(sa.select(r.c.metric).distinct().where(
        sa.tuple_(r.c.clinic_id, r.c.patient_key).in_(list(keys)))).scalars()) if keys else set()
    return set(codes.METRICS.values()) | summed


def _search(engine: sa.Engine, actor: Actor, patient_id: int, metrics: set[str] | None, since: int | None,
            until: int | None, limit: int) -> list[dict[str, Any]] | None:
    with engine.begin() as conn:
        live = records.resolve(conn, patient_id)
        if live is None or not records.may_see_patient(conn, actor, live):
            return None
        keys = [(c, m) for c, m in conn.execute(sa.select(patient_identifiers.c.clinic_id, patient_identifiers.c.mrn)
                                                .where(patient_identifiers.c.patient_id == live))]
        o = observations
        rows: list[dict[str, Any]] = []
        # One index range per (record number, metric), newest first: (patient_id, metric, time_ms) answers each
        # without touching the rest of a long history.
        for clinic_id, mrn in keys:
            for metric in sorted(metrics if metrics is not None else _patient_metrics(conn, keys)):
                q = sa.select(o).where(o.c.patient_id == mrn, o.c.metric == metric, o.c.clinic_id == clinic_id,
                                       o.c.kind == "observation")
                if since is not None:
                    q = q.where(o.c.time_ms >= since)
                if until is not None:
                    q = q.where(o.c.time_ms < until)
                rows += [dict(r) for r in conn.execute(q.order_by(o.c.time_ms.desc()).limit(limit)).mappings()]
        rows.sort(key=lambda r: (r["time_ms"], r["gateway_id"], r["seq"]), reverse=True)
        rows = rows[:limit]
        audit.record(conn, actor, "patient.observations.read", "patient", live,
                     detail={"via": "fhir", "rows": len(rows), "metrics": sorted(metrics) if metrics else None})
        return [observation_resource(r, live) for r in rows]


def _bad(message: str) -> web.Response:
    return common.fhir_response(common.operation_outcome("error", "invalid", message), 400)


@routes.get("/api/v1/fhir/Observation")
async def search_observations(request: web.Request) -> web.Response:
    actor = await require(request)
    try:
        common.check_params(request.query, PARAMS)
        if "_id" in request.query:
            found = await asyncio.to_thread(_read, request.app[ENGINE], actor, request.query["_id"])
            return common.fhir_response(common.searchset([found] if found else [], common.base_url(request)))
        subject = (request.query.get("patient") or request.query.get("subject") or "").strip()
        subject = subject.removeprefix("Patient/")
        if not subject.isdigit():
            raise SearchError("patient: give the patient (patient=ID or subject=Patient/ID); readings are searched "
                              "per patient")
        metrics = _metrics_of(request.query["code"]) if request.query.get("code") else None
        since, until = date_range(request.query.getall("date", []))
        count = common.search_count(request.query, MAX_RESULTS)
    except SearchError as exc:
        return _bad(str(exc))
    found_rows = await asyncio.to_thread(_search, request.app[ENGINE], actor, int(subject), metrics, since, until,
                                         count)
    if found_rows is None:
        return common.not_found("Patient", subject)
    return common.fhir_response(common.searchset(found_rows, common.base_url(request)))


@routes.get("/api/v1/fhir/Observation/{observation_id}")
async def read_observation(request: web.Request) -> web.Response:
    actor = await require(request)
    text = request.match_info["observation_id"]
    found = await asyncio.to_thread(_read, request.app[ENGINE], actor, text)
    return common.fhir_response(found) if found else common.not_found("Observation", text)


_FHIR = {"description": "FHIR R4 JSON", "content": {common.FHIR_JSON: {"schema": {"type": "object"}}}}
OPENAPI_PATHS: dict[str, Any] = {
    "/api/v1/fhir/Observation": {"get": {
        "summary": "A patient's vital-sign readings as FHIR Observations (a searchset Bundle, newest first); audited",
        "parameters": [openapi.param("patient", "The patient: ID (or subject=Patient/ID); required"),
                       openapi.param("code", f"{SYSTEM_MDC}|CODE (numeric or MDC_...), {SYSTEM_LOINC}|CODE, "
                                             "comma-separated"),
                       openapi.param("date", "geYYYY-MM-DD, lt2025-01-01T00:00:00Z, ...; may repeat"),
                       openapi.param("_id", "One Observation id"),
                       openapi.param("_count", f"At most this many (default 100, at most {MAX_RESULTS})",
                                     {"type": "integer"})],
        "responses": {"200": _FHIR, "400": {"description": "OperationOutcome: a search parameter is not understood"},
                      "404": {"description": "OperationOutcome: no such patient (or not visible)"},
                      "401": openapi.UNAUTHORIZED}}},
    "/api/v1/fhir/Observation/{observation_id}": {"get": {
        "summary": "One reading as a FHIR Observation (MDC and LOINC codes, UCUM quantity, device); audited",
        "parameters": [openapi.path_param("observation_id", "<gateway id>.<seq>")],
        "responses": {"200": _FHIR, "404": {"description": "OperationOutcome: no such Observation (or not visible)"},
                      "401": openapi.UNAUTHORIZED}}},
}
