"""FHIR R4 Patient: each HQ patient with its identifiers (HQ id, national id, every clinic's record number),
names in both scripts, gender, birth date, phone, and merges as links (a merged-away record is inactive and
"replaced-by" its survivor), read and searched under /api/v1/fhir/Patient.

Building the resource is pure (`patient_resource`); the handlers scope by `hq.records.may_see_patient` (search:
the same rule as a clause, or the clinic's search scope for its staff) and audit every read.
"""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import Mapping, Sequence
from typing import Any

import sqlalchemy as sa
from aiohttp import web

from hq import audit, openapi, patient_matching, patient_search, records
from hq.appkeys import ENGINE
from hq.auth import Actor, require
from hq.fhir import common
from hq.models import patient_identifiers, patient_merges, patients

routes = web.RouteTableDef()

SYSTEM_PATIENT = f"{common.SYSTEM_HQ_ID}:patient"
MAX_RESULTS = 500
PARAMS = ("_id", "identifier", "name", "birthdate", "gender", "_count")


SearchError = common.SearchError


# ---- the resource (pure) -------------------------------------------------------------------------
def patient_resource(row: Mapping[str, Any], identifiers: Sequence[Mapping[str, Any]],
                     merged_in: Sequence[int] = ()) -> dict[str, Any]:
    """`row`: a patients row; `identifiers`: its record numbers; `merged_in`: records merged into it."""
    ids: list[dict[str, Any]] = [{"use": "official", "system": SYSTEM_PATIENT, "value": str(row["id"])}]
    if row["national_id"]:
        ids.append({"use": "official", "system": common.SYSTEM_NATIONAL_ID, "value": row["national_id"]})
    ids += [{"use": "usual", "system": common.mrn_system(i["clinic_id"]), "value": i["mrn"]} for i in identifiers]
    official: dict[str, Any] = {"use": "official", "text": row["name"]}
    if row["family_name"]:
        official["family"] = row["family_name"]
    if row["given_name"]:
        official["given"] = [row["given_name"]]
    names = [official]
    if row["alt_name"]:
        names.append({"use": "usual", "text": row["alt_name"]})  # e.g. the pinyin of a Chinese name
    resource: dict[str, Any] = {
        "resourceType": "Patient", "id": str(row["id"]), "meta": {"lastUpdated": common.instant(row["updated_ms"])},
        "identifier": ids, "active": row["merged_into_id"] is None, "name": names,
    }
    if row["sex"]:
        resource["gender"] = row["sex"]
    if row["birth_date"] is not None:
        resource["birthDate"] = row["birth_date"].isoformat()
    if row["phone"]:
        resource["telecom"] = [{"system": "phone", "value": row["phone"]}]
    links = [{"other": common.reference("Patient", pid), "type": "replaces"} for pid in merged_in]
    if row["merged_into_id"] is not None:
        links.append({"other": common.reference("Patient", row["merged_into_id"]), "type": "replaced-by"})
    if links:
        resource["link"] = links
    return resource


# ---- search parameters ---------------------------------------------------------------------------
def _identifier(value: str) -> sa.ColumnElement[bool]:
    """system|value for the HQ id, the national id or a clinic's record number; a bare value matches any."""
    system, bar, code = value.rpartition("|")
    if not code:
        raise SearchError(f"identifier {value!r}: expected SYSTEM|VALUE or VALUE")
    by_mrn = sa.select(patient_identifiers.c.patient_id).where(patient_identifiers.c.mrn == code)
    if system == SYSTEM_PATIENT:
        return patients.c.id == (int(code) if code.isdigit() else -1)
    if system == common.SYSTEM_NATIONAL_ID:
        return patients.c.national_id == _nid(code)
    if system.startswith(common.SYSTEM_MRN_PREFIX) and system.endswith(":mrn"):
        clinic_id = system.removeprefix(common.SYSTEM_MRN_PREFIX).removesuffix(":mrn")
        return patients.c.id.in_(by_mrn.where(patient_identifiers.c.clinic_id == clinic_id))
    if not bar:
        return sa.or_(patients.c.national_id == _nid(code), patients.c.id.in_(by_mrn))
    raise SearchError(f"identifier system {system!r} is not one of {SYSTEM_PATIENT}, {common.SYSTEM_NATIONAL_ID}, "
                      f"{common.SYSTEM_MRN_PREFIX}CLINIC:mrn")


def _nid(code: str) -> str:
    try:
        return patient_matching.normalise_national_id(code)
    except patient_matching.PatientDataError:
        return code


def _conditions(params: Mapping[str, str]) -> list[sa.ColumnElement[bool]]:
    found: list[sa.ColumnElement[bool]] = []
    if "_id" in params:
        text = params["_id"].strip().removeprefix("Patient/")
        if not text.isdigit():
            raise SearchError(f"_id {params['_id']!r}: expected a patient id")
        found.append(patients.c.id == int(text))
    if "identifier" in params:
        found.append(_identifier(params["identifier"]))
    if "birthdate" in params:
        try:
            found.append(patients.c.birth_date == dt.date.fromisoformat(params["birthdate"].strip()))
        except ValueError:
            raise SearchError(f"birthdate {params['birthdate']!r}: expected YYYY-MM-DD") from None
    if "gender" in params:
        gender = params["gender"].strip()
        if gender not in ("female", "male", "other", "unknown"):
            raise SearchError(f"gender {gender!r}: expected female, male, other or unknown")
        found.append(patients.c.sex == gender)
    return found


# ---- reading -------------------------------------------------------------------------------------
def resources(conn: sa.Connection, rows: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    ids = [int(r["id"]) for r in rows]
    numbers: dict[int, list[dict[str, Any]]] = {}
    for pid, clinic_id, mrn in conn.execute(sa.select(patient_identifiers.c.patient_id, patient_identifiers.c.clinic_id,
                                                      patient_identifiers.c.mrn)
                                            .where(patient_identifiers.c.patient_id.in_(ids))
                                            .order_by(patient_identifiers.c.id)):
        numbers.setdefault(int(pid), []).append({"clinic_id": clinic_id, "mrn": mrn})
    merged_in: dict[int, list[int]] = {}
    for survivor, merged in conn.execute(sa.select(patient_merges.c.survivor_id, patient_merges.c.merged_id)
                                         .where(patient_merges.c.survivor_id.in_(ids),
                                                patient_merges.c.undone_ms.is_(None))
                                         .order_by(patient_merges.c.id)):
        merged_in.setdefault(int(survivor), []).append(int(merged))
    return [patient_resource(r, numbers.get(int(r["id"]), []), merged_in.get(int(r["id"]), [])) for r in rows]


def _read(engine: sa.Engine, actor: Actor, patient_id: int) -> dict[str, Any] | None:
    with engine.begin() as conn:
        row = conn.execute(sa.select(patients).where(patients.c.id == patient_id)).mappings().first()
        if row is None or not records.may_see_patient(conn, actor, patient_id):
            return None
        audit.record(conn, actor, "patient.read", "patient", patient_id, detail={"via": "fhir"})
        return resources(conn, [dict(row)])[0]


def _search(engine: sa.Engine, actor: Actor, params: Mapping[str, str], limit: int) -> list[dict[str, Any]]:
    conditions = _conditions(params)
    with engine.begin() as conn:
        q = sa.select(patients).where(*conditions)
        if name := params.get("name", "").strip():
            hits = patient_search.find(conn, name, actor=actor, limit=limit)
            q = q.where(patients.c.id.in_([h.patient_id for h in hits]))
        else:
            clause = records.visible_clause(actor, patients.c.id)
            if clause is not None:
                q = q.where(clause)
            if not conditions:
                raise SearchError("give at least one of _id, identifier, name, birthdate, gender")
        rows = [dict(r) for r in conn.execute(q.order_by(patients.c.id).limit(limit)).mappings()]
        audit.record(conn, actor, "patient.search", "patient", None, detail={"via": "fhir", "query": dict(params),
                                                                             "hits": len(rows)})
        return resources(conn, rows)


def _bad(message: str) -> web.Response:
    return common.fhir_response(common.operation_outcome("error", "invalid", message), 400)


@routes.get("/api/v1/fhir/Patient")
async def search_patients(request: web.Request) -> web.Response:
    actor = await require(request)
    params = dict(request.query)
    try:
        common.check_params(params, PARAMS)
        limit = common.search_count(params, MAX_RESULTS)
        found = await asyncio.to_thread(_search, request.app[ENGINE], actor, params, limit)
    except SearchError as exc:
        return _bad(str(exc))
    return common.fhir_response(common.searchset(found, common.base_url(request)))


@routes.get("/api/v1/fhir/Patient/{patient_id}")
async def read_patient(request: web.Request) -> web.Response:
    actor = await require(request)
    text = request.match_info["patient_id"]
    found = await asyncio.to_thread(_read, request.app[ENGINE], actor, int(text)) if text.isdigit() else None
    return common.fhir_response(found) if found else common.not_found("Patient", text)


_FHIR = {"description": "FHIR R4 JSON", "content": {common.FHIR_JSON: {"schema": {"type": "object"}}}}
OPENAPI_PATHS: dict[str, Any] = {
    "/api/v1/fhir/Patient": {"get": {
        "summary": "Search patients as FHIR Patients (a searchset Bundle); only those the caller may see; audited",
        "parameters": [openapi.param("_id", "Patient id"),
                       openapi.param("identifier", f"{SYSTEM_PATIENT}|ID, {common.SYSTEM_NATIONAL_ID}|ID, "
                                                   f"{common.SYSTEM_MRN_PREFIX}CLINIC:mrn|MRN, or a bare value"),
                       openapi.param("name", "Name words (any script, by prefix)"),
                       openapi.param("birthdate", "YYYY-MM-DD"), openapi.param("gender", "female|male|other|unknown"),
                       openapi.param("_count", f"At most this many (default 100, at most {MAX_RESULTS})",
                                     {"type": "integer"})],
        "responses": {"200": _FHIR, "400": {"description": "OperationOutcome: a search parameter is not understood"},
                      "401": openapi.UNAUTHORIZED}}},
    "/api/v1/fhir/Patient/{patient_id}": {"get": {
        "summary": "A patient as a FHIR Patient: identifiers, names, gender, birth date, merge links; audited",
        "parameters": [openapi.path_param("patient_id", "The HQ patient id", {"type": "integer"})],
        "responses": {"200": _FHIR, "404": {"description": "OperationOutcome: no such Patient (or not visible)"},
                      "401": openapi.UNAUTHORIZED}}},
}
