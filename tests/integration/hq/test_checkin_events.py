"""PATIENT_CHECKIN events from a gateway, handled by HQ in the ingest transaction (SQLite and PostgreSQL): the
patient is registered or matched, a visit recorded once however often the batch comes, the device's own
patient id joins the record (the record its readings made is merged in), the gateway gets a checkin_result
notice; a malformed check-in is refused without wedging the gateway's ingest."""

from __future__ import annotations

import uuid
from typing import Any

import sqlalchemy as sa

from gateway import wire
from hq import db, records
from hq.models import audit_log, downlink_messages, patient_duplicates, patient_merges, visits
from tests.integration.hq.conftest import FakeGateway, RunningHq, eventually, hq_config, running_hq
from tests.support.mosquitto import Mosquitto


def checkin_batch(gw: FakeGateway, seq: int, floor: int, **body: Any) -> wire.Batch:
    body = {"checkin_id": uuid.uuid4().hex, "name": "王芳", "sex": "female", "checked_in_ms": 1, **body}
    batch = gw.batch([seq], lane=wire.Lane.CONSULT, kind="event", metric=wire.PATIENT_CHECKIN_METRIC,
                     patient_id=body.get("mrn"), extra=body)
    return wire.Batch(batch.gateway_id, batch.clinic_id, batch.lane, batch.sent_ms, batch.records, floor)


def query(url: str, stmt: Any) -> list[Any]:
    engine = db.create_engine_for(url)
    try:
        with engine.connect() as conn:
            return list(conn.execute(stmt).mappings())
    finally:
        engine.dispose()


async def wait_for_record(hq: RunningHq, clinic_id: str, mrn: str) -> int:
    found: dict[str, Any] = {}

    async def known() -> bool:
        async with hq.http.get(f"{hq.url}/api/v1/patients/lookup", params={"clinic_id": clinic_id, "mrn": mrn}) as r:
            found.update(await r.json())
            return r.status == 200

    await eventually(known, what=f"a record of {mrn}")
    return int(found["patient_id"])


async def test_a_checkin_registers_the_patient_and_claims_the_devices_earlier_readings(
        broker: Mosquitto, db_url: str) -> None:
    extra = "[records]\nrollup_interval_s = 0.2\n"
    async with running_hq(hq_config(broker, db_url, extra)) as hq, FakeGateway(broker) as gw:
        readings = gw.batch(range(1, 11), patient_id="BED-3")
        await gw.send(wire.Batch(readings.gateway_id, readings.clinic_id, readings.lane, readings.sent_ms,
                                 readings.records, 11))
        await gw.next_ack()
        provisional = await wait_for_record(hq, "clinic-a", "BED-3")

        event = checkin_batch(gw, 11, 12, mrn="A-0012", national_id="W123", reason="short of breath",
                              devices=[{"device_id": "ox-1", "reported_patient_id": "BED-3"}])
        for _ in range(2):  # a QoS 1 redelivery: handled once
            await gw.send(event)
            await gw.next_ack()
        pid = await wait_for_record(hq, "clinic-a", "A-0012")
        assert pid != provisional
        patient = await hq.get_json(f"/api/v1/patients/{pid}")
        assert (patient["name"], patient["national_id"], patient["sex"], patient["origin"]) == (
            "王芳", "W123", "female", "checkin")
        assert sorted(i["mrn"] for i in patient["identifiers"]) == ["A-0012", "BED-3"]
        assert (await hq.get_json(f"/api/v1/patients/{provisional}"))["patient_id"] == pid  # merged in
        timeline = (await hq.get_json(f"/api/v1/patients/{pid}/timeline"))["timeline"]
        assert sum(m["count"] for d in timeline["vitals_by_day"] for m in d["metrics"]) == 10
        assert [e["reason"] for e in timeline["entries"] if e["type"] == "visit"] == ["short of breath"]
        assert len(query(db_url, sa.select(visits))) == 1
        merges = query(db_url, sa.select(patient_merges))
        assert [(m["survivor_id"], m["merged_id"]) for m in merges] == [(pid, provisional)]
        notices = query(db_url, sa.select(downlink_messages).where(downlink_messages.c.kind == "checkin_result"))
        assert len(notices) == 1 and notices[0]["gateway_id"] == "gw-1"
        body = notices[0]["body"]
        assert (body["patient_id"], body["outcome"], body["checkin_id"]) == (pid, "created", event.records[0].extra[
            "checkin_id"])  # type: ignore[index]
        assert body["devices"][0]["mapping"] == f"merged record {provisional}"
        actions = query(db_url, sa.select(audit_log.c.actor, audit_log.c.action).where(
            audit_log.c.action == "patient.checkin"))
        assert [tuple(a.values()) for a in actions] == [("gateway:gw-1", "patient.checkin")]

        # The same patient at the next visit, linked to a monitor whose own id is another real patient's.
        other = (await hq.send_json("POST", "/api/v1/patients", {"clinic_id": "clinic-a", "mrn": "BED-4",
                                                                 "name": "Someone Else"}, status=201))["patient"]
        await gw.send(checkin_batch(gw, 12, 13, mrn="A-0012", national_id="W123",
                                    devices=[{"device_id": "mon-2", "reported_patient_id": "BED-4"}]))
        await gw.next_ack()

        async def second_visit() -> bool:
            return len(query(db_url, sa.select(visits))) == 2

        await eventually(second_visit, what="the second check-in")
        dup = query(db_url, sa.select(patient_duplicates))
        assert [(d["patient_id"], d["other_id"], d["source"]) for d in dup] == [
            (min(pid, other["patient_id"]), max(pid, other["patient_id"]), "checkin")]
        with db.create_engine_for(db_url).connect() as conn:
            assert records.patient_for_mrn(conn, "clinic-a", "BED-4") == other["patient_id"]  # not taken over


async def test_a_malformed_checkin_is_refused_and_the_ingest_goes_on(broker: Mosquitto, db_url: str) -> None:
    async with running_hq(hq_config(broker, db_url)) as hq, FakeGateway(broker) as gw:
        await gw.send(checkin_batch(gw, 1, 0, mrn=None))
        await gw.next_ack()
        await gw.send(checkin_batch(gw, 2, 0, mrn="A-1", birth_date="1990-13-45"))
        await gw.next_ack()
        await gw.send(checkin_batch(gw, 3, 0, mrn="A-2"))
        await gw.next_ack()
        await wait_for_record(hq, "clinic-a", "A-2")
        with db.create_engine_for(db_url).connect() as conn:
            assert records.patient_for_mrn(conn, "clinic-a", "A-1") is None
        from hq.appkeys import EVENTS

        assert hq.app[EVENTS].rejected_total == 2 and hq.app[EVENTS].handled_total == 1
        stored = await hq.get_json("/api/v1/observations?kind=event")
        assert len(stored["observations"]) == 3  # every event row is kept at HQ
