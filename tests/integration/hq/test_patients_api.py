"""The patient records API and console pages on a running HQ (real broker, SQLite and PostgreSQL): register,
search, timeline, lookup of a device's patient id, roles (clinic staff their clinic, experts their cases),
merging and undoing through the API, DICOM upload (refusing non-DICOM, truncated and oversized files) and the
audited download of the original."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import aiohttp
import sqlalchemy as sa

from hq import db
from hq.models import audit_log
from tests.integration.hq.conftest import FakeGateway, RunningHq, eventually, hq_config, running_hq
from tests.integration.hq.records_support import add_clinics
from tests.support import accounts, dicom_files
from tests.support.mosquitto import Mosquitto

MAX_UPLOAD = 64 * 1024


def config(broker: Mosquitto, db_url: str, tmp_path: Path) -> Any:
    return hq_config(broker, db_url, f'[records]\nattachments_dir = "{tmp_path / "attachments"}"\n'
                                     f"max_upload_bytes = {MAX_UPLOAD}\nrollup_interval_s = 0.2\n")


def audit_actions(url: str) -> list[tuple[str, str, str | None]]:
    engine = db.create_engine_for(url)
    try:
        with engine.connect() as conn:
            return [tuple(r) for r in conn.execute(sa.select(audit_log.c.actor, audit_log.c.action,
                                                             audit_log.c.target_id).order_by(audit_log.c.id))]
    finally:
        engine.dispose()


async def upload(hq: RunningHq, patient_id: int, data: bytes, *, token: str | None = None,
                 filename: str = "slice.dcm") -> tuple[int, dict[str, Any]]:
    form = aiohttp.FormData()
    form.add_field("file", data, filename=filename, content_type="application/dicom")
    headers = {"Authorization": f"Bearer {token}"} if token else None
    async with hq.http.post(f"{hq.url}/api/v1/patients/{patient_id}/imaging", data=form, headers=headers) as resp:
        return resp.status, await resp.json()


async def test_register_search_timeline_and_roles(broker: Mosquitto, db_url: str, tmp_path: Path) -> None:
    async with running_hq(config(broker, db_url, tmp_path)) as hq:
        add_clinics(db_url, "clinic-a", "clinic-b")
        created = await hq.send_json("POST", "/api/v1/patients", {
            "clinic_id": "clinic-a", "mrn": "A-0001", "name": "张伟", "alt_name": "Zhang Wei", "sex": "M",
            "birth_date": "1990-03-07", "national_id": "11010519900307123X"}, status=201)
        pid = created["patient"]["patient_id"]
        assert created["outcome"] == "created" and created["patient"]["identifiers"][0]["mrn"] == "A-0001"
        again = await hq.send_json("POST", "/api/v1/patients", {
            "clinic_id": "clinic-b", "mrn": "B-9", "name": "Zhang Wei", "national_id": "110105199003071 23x"})
        assert again["outcome"] == "matched" and again["patient"]["patient_id"] == pid
        bad = await hq.send_json("POST", "/api/v1/patients", {"clinic_id": "clinic-a", "mrn": "A-2", "name": "X",
                                                              "birth_date": "07/03/1990"}, status=400)
        assert bad["field"] == "birth_date" and "YYYY-MM-DD" in bad["error"]
        assert (await hq.send_json("POST", "/api/v1/patients", {"name": "X", "colour": "red"},
                                   status=400))["field"] == "colour"

        found = await hq.get_json("/api/v1/patients?q=zhang%20wei")
        assert [p["patient_id"] for p in found["patients"]] == [pid]
        assert (await hq.get_json("/api/v1/patients?q=b-9"))["patients"][0]["matched"] == "mrn"
        assert (await hq.get_json("/api/v1/patients?q=" + "x" * 201, status=400))["parameter"] == "q"
        patient = await hq.get_json(f"/api/v1/patients/{pid}")
        assert sorted(i["mrn"] for i in patient["identifiers"]) == ["A-0001", "B-9"]
        timeline = (await hq.get_json(f"/api/v1/patients/{pid}/timeline?days=7"))["timeline"]
        assert timeline["entries"] == [] and timeline["vitals_by_day"] == []
        assert (await hq.get_json(f"/api/v1/patients/{pid}/timeline?days=999", status=400))["parameter"] == "days"
        assert "error" in await hq.get_json("/api/v1/patients/999999", status=404)

        staff_b = await accounts_token(hq, "nurse-b", "clinic_staff", "clinic-b")
        staff_c = await accounts_token(hq, "nurse-c", "clinic_staff", "clinic-a")
        expert = await accounts_token(hq, "dr-x", "expert")
        assert (await hq.get_json(f"/api/v1/patients/{pid}", token=staff_b))["patient_id"] == pid  # B-9 is theirs
        other = await hq.send_json("POST", "/api/v1/patients", {"mrn": "A-77", "name": "Only At A"}, status=201,
                                   token=staff_c)
        assert other["patient"]["identifiers"][0]["clinic_id"] == "clinic-a"  # staff register at their clinic
        await hq.get_json(f"/api/v1/patients/{other['patient']['patient_id']}", status=403, token=staff_b)
        await hq.send_json("POST", "/api/v1/patients", {"clinic_id": "clinic-a", "mrn": "Z", "name": "Z"},
                           status=403, token=staff_b)
        assert (await hq.get_json("/api/v1/patients?q=only", token=staff_b))["patients"] == []
        await hq.get_json(f"/api/v1/patients/{pid}", status=403, token=expert)
        await hq.send_json("POST", "/api/v1/patients/merges", {"survivor_id": pid, "merged_id": 2}, status=403,
                           token=staff_b)

        async with hq.http.get(f"{hq.url}/patients?q=%E5%BC%A0") as resp:  # 张
            page = await resp.text()
        assert resp.status == 200 and f'href="/patients/{pid}"' in page and "110105" in page
        assert "11010519900307123X" not in page  # lists show the national id masked
        async with hq.http.get(f"{hq.url}/patients/{pid}") as resp:
            page = await resp.text()
        assert resp.status == 200 and "张伟" in page and 'id="imaging-upload"' in page
        actions = audit_actions(db_url)
        assert ("user:admin", "patient.register", str(pid)) in actions
        assert ("user:admin", "patient.timeline.read", str(pid)) in actions
        assert ("user:nurse-b", "patient.read", str(pid)) in actions
        assert any(a == "patient.search" for _, a, _t in actions)


async def accounts_token(hq: RunningHq, name: str, role: str, clinic_id: str | None = None) -> str:
    import asyncio

    return await asyncio.to_thread(accounts.user_with_token, hq.db_url, name, role, clinic_id=clinic_id)


async def test_a_device_patient_id_leads_to_a_record_and_readings_reach_the_timeline(
        broker: Mosquitto, db_url: str, tmp_path: Path) -> None:
    async with running_hq(config(broker, db_url, tmp_path)) as hq, FakeGateway(broker) as gw:
        batch = gw.batch(range(1, 21), patient_id="DEV-1")
        await gw.send(batch)
        await gw.next_ack()
        floor = gw.batch([21], patient_id="DEV-1")
        await gw.send(type(floor)(floor.gateway_id, floor.clinic_id, floor.lane, floor.sent_ms, floor.records, 22))
        await gw.next_ack()
        found: dict[str, Any] = {}

        async def registered() -> bool:
            found.update(await hq.get_json("/api/v1/patients?q=dev-1"))
            return bool(found["patients"])

        await eventually(registered, what="the rollup making a record of the device's patient id")
        pid = found["patients"][0]["patient_id"]
        assert found["patients"][0]["origin"] == "device"
        assert (await hq.get_json("/api/v1/patients/lookup?clinic_id=clinic-a&mrn=DEV-1"))["patient_id"] == pid
        await hq.get_json("/api/v1/patients/lookup?clinic_id=clinic-a&mrn=NOBODY", status=404)
        assert (await hq.get_json("/api/v1/patients/lookup?mrn=DEV-1", status=400))["parameter"] == "clinic_id"
        days = (await hq.get_json(f"/api/v1/patients/{pid}/timeline"))["timeline"]["vitals_by_day"]
        assert sum(m["count"] for d in days for m in d["metrics"]) == 21
        async with hq.http.get(f"{hq.url}/patients/lookup?clinic_id=clinic-a&mrn=DEV-1", allow_redirects=False) as r:
            assert r.status == 303 and r.headers["Location"] == f"/patients/{pid}"
        # a check-in's registration completes the record made from the readings
        done = await hq.send_json("POST", "/api/v1/patients", {"clinic_id": "clinic-a", "mrn": "DEV-1",
                                                                "name": "李娜", "sex": "F"})
        assert done["patient"]["patient_id"] == pid and done["patient"]["origin"] == "console"


async def test_merge_and_undo_through_the_api(broker: Mosquitto, db_url: str, tmp_path: Path) -> None:
    async with running_hq(config(broker, db_url, tmp_path)) as hq:
        add_clinics(db_url, "clinic-a", "clinic-b")
        a = (await hq.send_json("POST", "/api/v1/patients", {"clinic_id": "clinic-a", "mrn": "A-1", "name": "Wang Fang",
                                                             "birth_date": "1970-01-01"}, status=201))["patient"]
        b_doc = await hq.send_json("POST", "/api/v1/patients", {"clinic_id": "clinic-a", "mrn": "A-1",
                                                                "name": "Wang Fang", "birth_date": "1971-01-01"},
                                   status=201)
        b = b_doc["patient"]
        assert b_doc["outcome"] == "created_possible_duplicate"
        duplicates = (await hq.get_json("/api/v1/patients/duplicates"))["duplicates"]
        assert [(d["patient_id"], d["other_id"]) for d in duplicates] == [(a["patient_id"], b["patient_id"])]
        async with hq.http.get(f"{hq.url}/patients/merge?survivor={a['patient_id']}&merged={b['patient_id']}") as r:
            assert r.status == 200 and 'id="merge-form"' in await r.text()
        conflict = await hq.send_json("POST", "/api/v1/patients/merges", {"survivor_id": a["patient_id"],
                                                                          "merged_id": a["patient_id"]}, status=409)
        assert "itself" in conflict["error"]
        merged = await hq.send_json("POST", "/api/v1/patients/merges", {
            "survivor_id": a["patient_id"], "merged_id": b["patient_id"], "reason": "typo in birth year"}, status=201)
        assert (await hq.get_json("/api/v1/patients/duplicates"))["duplicates"] == []
        via_b = await hq.get_json(f"/api/v1/patients/{b['patient_id']}")
        assert via_b["patient_id"] == a["patient_id"] and via_b["merges"][0]["merged_id"] == b["patient_id"]
        async with hq.http.get(f"{hq.url}/patients/{b['patient_id']}", allow_redirects=False) as r:
            assert r.status == 303 and r.headers["Location"].startswith(f"/patients/{a['patient_id']}?merged_from=")
        await hq.send_json("POST", f"/api/v1/patients/merges/{merged['merge_id']}/undo", {})
        assert (await hq.get_json(f"/api/v1/patients/{b['patient_id']}"))["patient_id"] == b["patient_id"]
        actions = [a for _, a, _t in audit_actions(db_url)]
        assert "patient.merge" in actions and "patient.merge.undo" in actions


async def test_dicom_upload_and_audited_download(broker: Mosquitto, db_url: str, tmp_path: Path) -> None:
    async with running_hq(config(broker, db_url, tmp_path)) as hq:
        add_clinics(db_url, "clinic-a", "clinic-b")
        pid = (await hq.send_json("POST", "/api/v1/patients", {"clinic_id": "clinic-a", "mrn": "A-1",
                                                               "name": "Imaged"}, status=201))["patient"]["patient_id"]
        other = (await hq.send_json("POST", "/api/v1/patients", {"clinic_id": "clinic-b", "mrn": "B-1",
                                                                 "name": "Other"}, status=201))["patient"]["patient_id"]
        data = dicom_files.ct_slice(sop_instance_uid="1.2.826.0.1.3680043.8.498.1", study_description="Chest CT")
        status, filed = await upload(hq, pid, data)
        assert status == 201, filed
        assert (filed["modality"], filed["body_part"], filed["study_date"], filed["study_description"]) == (
            "CT", "CHEST", "2025-12-01", "Chest CT")
        assert filed["tags"]["PatientName"] == "Zhang^Wei" and filed["tags"]["SOPClassName"] == "CT Image Storage"
        assert filed["sha256"] == hashlib.sha256(data).hexdigest() and filed["size_bytes"] == len(data)
        stored = tmp_path / "attachments" / filed["sha256"][:2] / filed["sha256"][2:4] / filed["sha256"]
        assert stored.read_bytes() == data
        assert list((tmp_path / "attachments" / "incoming").iterdir()) == []

        assert (await upload(hq, pid, data))[0] == 200  # the same file again: filed once
        status, clash = await upload(hq, other, data)
        assert status == 409 and "another patient" in clash["error"]
        status, err = await upload(hq, pid, b"MZ" + b"\0" * 500, filename="setup.exe")
        assert status == 400 and "not a DICOM file" in err["error"] and err["field"] == "file"
        status, err = await upload(hq, pid, dicom_files.ct_slice()[:-3000])
        assert status == 400 and "truncated" in err["error"]
        status, err = await upload(hq, pid, dicom_files.ct_slice(pixels=256))  # 128 KiB > 64 KiB
        assert status == 413 and "max_upload_bytes" in err["error"]
        status, err = await upload(hq, pid, dicom_files.without_sop_instance_uid())
        assert status == 400 and "SOPInstanceUID" in err["error"]
        async with hq.http.post(f"{hq.url}/api/v1/patients/{pid}/imaging", json={"file": "x"}) as resp:
            assert resp.status == 400 and "multipart" in (await resp.json())["error"]
        assert sorted(p.name for p in (tmp_path / "attachments").rglob("*") if p.is_file()) == [filed["sha256"]]

        timeline = (await hq.get_json(f"/api/v1/patients/{pid}/timeline"))["timeline"]
        assert [(e["type"], e["imaging_id"]) for e in timeline["entries"]] == [("imaging", filed["imaging_id"])]
        async with hq.http.get(f"{hq.url}{filed['download']}") as resp:
            assert resp.status == 200 and resp.headers["Content-Type"] == "application/dicom"
            assert await resp.read() == data
        staff_b = await accounts_token(hq, "nurse-b", "clinic_staff", "clinic-b")
        async with hq.http.get(f"{hq.url}{filed['download']}", headers={"Authorization": f"Bearer {staff_b}"}) as r:
            assert r.status == 403
        status, _ = await upload(hq, pid, data, token=staff_b)
        assert status == 403
        actions = audit_actions(db_url)
        assert ("user:admin", "imaging.upload", str(filed["imaging_id"])) in actions
        assert ("user:admin", "imaging.download", str(filed["imaging_id"])) in actions
        assert sum(1 for _, a, _t in actions if a == "imaging.upload") == 1
