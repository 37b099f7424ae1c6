"""HQ's side of a gateway's PATIENT_CHECKIN event: in the ingest transaction, the check-in is matched to an HQ
patient (or makes one), recorded as a visit, the device patient ids it linked are mapped to that patient, and
the gateway is told the outcome (a `checkin_result` notice).

Offline check-ins arrive when the link returns, in the order they were made; each is handled once (the event
row is stored once). A malformed one is refused with EventError naming the field: its work is rolled back,
the event row kept. The rules are `hq.records`; this module only translates the event.
"""

from __future__ import annotations

import datetime as dt
import logging
from typing import Any

import sqlalchemy as sa

from gateway import wire
from hq import audit, downlink, patient_merge, records
from hq.gateway_events import EventContext, EventError, GatewayEvents
from hq.models import consultations, imaging, patient_identifiers, visits
from hq.patient_matching import PatientDataError

log = logging.getLogger(__name__)

TEXT_FIELDS = ("mrn", "name", "family_name", "given_name", "alt_name", "national_id", "sex", "birth_date", "phone",
               "reason")


def register(events: GatewayEvents) -> None:
    events.register(wire.PATIENT_CHECKIN_METRIC, handle)


def _body(row: dict[str, Any]) -> dict[str, Any]:
    body = row["extra"]
    if not isinstance(body, dict):
        raise EventError("extra: a check-in's body must be an object")
    checkin_id = body.get("checkin_id")
    if not isinstance(checkin_id, str) or not 1 <= len(checkin_id) <= 64:
        raise EventError("checkin_id: expected the gateway's check-in id (1-64 characters)")
    for name in TEXT_FIELDS:
        if body.get(name) is not None and not isinstance(body[name], str):
            raise EventError(f"{name}: expected text or null")
    if not body.get("mrn"):
        raise EventError("mrn: the clinic's record number is missing")
    devices = body.get("devices") or []
    if not isinstance(devices, list) or not all(
            isinstance(d, dict) and isinstance(d.get("device_id"), str)
            and (d.get("reported_patient_id") is None or isinstance(d["reported_patient_id"], str)) for d in devices):
        raise EventError("devices: expected a list of {device_id, reported_patient_id}")
    return body


def handle(ctx: EventContext, row: dict[str, Any]) -> None:
    body = _body(row)
    conn, clinic_id, gateway_id = ctx.conn, row["clinic_id"], row["gateway_id"]
    try:
        demographics = records.clean_demographics(
            name=body.get("name"), family_name=body.get("family_name"), given_name=body.get("given_name"),
            alt_name=body.get("alt_name"), sex=body.get("sex"), birth_date=body.get("birth_date"),
            national_id=body.get("national_id"), phone=body.get("phone"),
            today=dt.datetime.fromtimestamp(ctx.hq_ms / 1000, dt.UTC).date())
        result = records.register(conn, clinic_id, body["mrn"], demographics, origin="checkin", source="checkin",
                                  now=ctx.hq_ms)
    except PatientDataError as exc:
        raise EventError(str(exc)) from None
    except sa.exc.IntegrityError as exc:
        # Another transaction took the same national id or number at this instant: refuse rather than wedge
        # the gateway's ingest; the event row stays at HQ and the clinic sees no answer for this check-in.
        raise EventError(f"registration collided with another: {exc.orig}") from None
    pid = result.patient_id
    visit_id, _created = records.record_visit(conn, pid, clinic_id, started_ms=int(row["time_ms"]),
                                              reason=body.get("reason"), gateway_id=gateway_id,
                                              external_id=body["checkin_id"], now=ctx.hq_ms)
    devices = [_map_device(conn, pid, clinic_id, d, body, ctx.hq_ms) for d in body.get("devices") or []]
    row_patient = records.find_patient(conn, pid)
    assert row_patient is not None
    audit.record(conn, f"gateway:{gateway_id}", "patient.checkin", "patient", pid, clinic_id=clinic_id,
                 detail={"checkin_id": body["checkin_id"], "outcome": result.outcome, "mrn": body["mrn"],
                         "visit_id": visit_id, "devices": devices,
                         "duplicates": [d.other_id for d in result.duplicates]})
    downlink.send(conn, gateway_id, wire.CHECKIN_RESULT_NOTICE, {
        "checkin_id": body["checkin_id"], "patient_id": pid, "outcome": result.outcome, "name": row_patient["name"],
        "visit_id": visit_id, "possible_duplicates": len(result.duplicates), "devices": devices})
    ctx.downlink_queued = True


def _map_device(conn: sa.Connection, pid: int, clinic_id: str, device: dict[str, Any], body: dict[str, Any],
                now: int) -> dict[str, Any]:
    """The patient id a linked device sent before the link (its own, or a bed's) names this patient too, so its
    earlier readings join the record; unless that id is another real patient's (then: a duplicate candidate)."""
    reported = device.get("reported_patient_id")
    out: dict[str, Any] = {"device_id": device["device_id"], "reported_patient_id": reported}
    if not reported or reported == body["mrn"]:
        out["mapping"] = "none needed"
        return out
    owner = records.patient_for_mrn(conn, clinic_id, reported)
    if owner is None:
        conn.execute(patient_identifiers.insert().values(patient_id=pid, clinic_id=clinic_id, mrn=reported,
                                                         created_ms=now))
        records.reindex(conn, pid)
        out["mapping"] = "added"
    elif owner == pid:
        out["mapping"] = "already this patient's"
    elif _only_device_readings(conn, owner):
        # A record HQ made from this device's readings, with nothing else: the link says whose they are.
        merged = patient_merge.merge(conn, pid, owner, by_user_id=None, now=now,
                                     reason=f"device {device['device_id']} linked at check-in {body['checkin_id']}")
        audit.record(conn, "system", "patient.merge", "patient", pid, clinic_id=clinic_id,
                     detail={"merged_id": owner, "merge_id": merged.merge_id, "moved": merged.counts(),
                             "reason": "device linked at check-in"})
        out["mapping"] = f"merged record {owner}"
    else:
        records.note_duplicate(conn, pid, owner, f"device {device['device_id']} was linked to this patient at "
                               f"check-in but sent patient id {reported}, another record's", source="checkin",
                               now=now)
        out["mapping"] = f"conflict: {reported} is record {owner}'s"
    return out


def _only_device_readings(conn: sa.Connection, patient_id: int) -> bool:
    row = records.find_patient(conn, patient_id)
    if row is None or row["origin"] != "device" or row["merged_into_id"] is not None:
        return False
    for table in (visits, imaging, consultations):
        if conn.execute(sa.select(table.c.id).where(table.c.patient_id == patient_id).limit(1)).first():
            return False
    return conn.execute(sa.select(sa.func.count()).select_from(patient_identifiers)
                        .where(patient_identifiers.c.patient_id == patient_id)).scalar_one() <= 1
