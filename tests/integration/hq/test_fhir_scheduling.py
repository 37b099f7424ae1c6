"""FHIR R4 Schedule, Slot and Appointment from a running HQ, each resource validated with fhir.resources (R4
4.0.1) and its codes checked (the models check structure, not bindings)."""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import aiohttp
from fhir.resources.appointment import Appointment
from fhir.resources.bundle import Bundle
from fhir.resources.operationoutcome import OperationOutcome
from fhir.resources.schedule import Schedule
from fhir.resources.slot import Slot

from hq.fhir import common
from hq.fhir import scheduling as fhir
from tests.integration.hq.conftest import hq_config, running_hq
from tests.integration.hq.test_schedule_api import RULES, call, next_monday, seed
from tests.support.mosquitto import Mosquitto

NEW_YORK = ZoneInfo("America/New_York")
SLOT_STATUSES = {"free", "busy", "busy-tentative", "busy-unavailable"}


async def fhir_get(url: str, token: str, status: int = 200) -> Any:
    async with aiohttp.ClientSession() as http, http.get(url, headers={"Authorization": f"Bearer {token}"}) as resp:
        assert resp.status == status, await resp.text()
        assert resp.content_type == "application/fhir+json"
        return await resp.json()


def entries(bundle: dict[str, Any]) -> list[dict[str, Any]]:
    Bundle.parse_obj(bundle)
    assert bundle["type"] == "searchset" and bundle["total"] == len(bundle.get("entry", []))
    return [e["resource"] for e in bundle.get("entry", [])]


async def test_schedule_slots_and_appointments_are_valid_fhir_r4(broker: Mosquitto, sqlite_url: str) -> None:
    async with running_hq(hq_config(broker, sqlite_url)) as hq:
        t = await asyncio.to_thread(seed, sqlite_url)
        await call(hq, "PUT", f"/api/v1/schedule/experts/{t['expert']}/availability", t["wang"], {"rules": RULES})
        monday = next_monday()
        nine = datetime(monday.year, monday.month, monday.day, 9, tzinfo=NEW_YORK)
        ms = int(nine.timestamp() * 1000)
        booked = await call(hq, "POST", "/api/v1/appointments", t["nurse-a"],
                            {"expert_id": t["expert"], "start": ms, "end": ms + 1_800_000, "mrn": "MRN-1",
                             "reason": "Arrhythmia"}, status=201)
        extra_start = ms - 2 * 3_600_000  # 07:00 in New York, before the published hours
        pending = await call(hq, "POST", "/api/v1/appointments/urgent", t["nurse-a"],
                             {"expert_id": t["expert"], "start": extra_start, "end": extra_start + 1_800_000,
                              "reason": "Syncope"}, status=201)
        cancelled = await call(hq, "POST", "/api/v1/appointments", t["nurse-a"],
                               {"expert_id": t["expert"], "start": ms + 3_600_000, "end": ms + 5_400_000}, status=201)
        await call(hq, "POST", f"/api/v1/appointments/{cancelled['appointment_id']}/cancel", t["nurse-a"],
                   {"reason": "Family declined"})
        await call(hq, "POST", f"/api/v1/schedule/experts/{t['expert']}/exceptions", t["wang"],
                   {"kind": "clinic_duty", "starts": (nine + timedelta(hours=2)).isoformat(),
                    "ends": (nine + timedelta(hours=3)).isoformat()}, status=201)
        base = hq.url + "/api/v1/fhir"

        schedule = await fhir_get(f"{base}/Schedule/{t['expert']}", t["nurse-a"])
        Schedule.parse_obj(schedule)
        assert schedule["actor"][0]["reference"] == f"Practitioner/{t['expert']}"
        assert schedule["specialty"][0]["coding"][0] == {"system": common.SYSTEM_DEPARTMENT, "code": "cardiology",
                                                         "display": "Cardiology"}
        assert "America/New_York: Monday 09:00-12:00, 30-minute slots" in schedule["comment"]
        found = entries(await fhir_get(f"{base}/Schedule?actor=Practitioner/{t['expert']}", t["nurse-a"]))
        assert [s["id"] for s in found] == [str(t["expert"])]
        assert len(entries(await fhir_get(f"{base}/Schedule", t["wang"]))) == 2
        await fhir_get(f"{base}/Schedule/999", t["nurse-a"], status=404)

        day = nine.date().isoformat()
        next_day = (nine.date() + timedelta(days=1)).isoformat()
        slot_bundle = await fhir_get(f"{base}/Slot?schedule=Schedule/{t['expert']}&start=ge{day}&start=lt{next_day}",
                                     t["nurse-a"])
        day_slots = entries(slot_bundle)
        for s in day_slots:
            Slot.parse_obj(s)
            assert s["status"] in SLOT_STATUSES and s["schedule"] == {"reference": f"Schedule/{t['expert']}"}
        by_start = {s["start"]: s for s in day_slots}
        status = {k[11:16]: v["status"] for k, v in by_start.items()}
        utc_nine = nine.astimezone(ZoneInfo("UTC")).strftime("%H:%M")
        assert status[utc_nine] == "busy"  # booked
        assert list(status.values()).count("busy-unavailable") == 2  # 11:00-12:00 clinic duty
        assert list(status.values()).count("busy-tentative") == 1  # the urgent extra slot at 07:00
        assert list(status.values()).count("free") == 3  # 09:30, 10:00 (cancelled), 10:30
        free = entries(await fhir_get(f"{base}/Slot?schedule={t['expert']}&start=ge{day}&start=lt{next_day}"
                                      "&status=free", t["nurse-a"]))
        assert len(free) == 3
        one = await fhir_get(f"{base}/Slot/{free[0]['id']}", t["nurse-a"])
        assert Slot.parse_obj(one).id == free[0]["id"]
        await fhir_get(f"{base}/Slot/{t['expert']}-1-2", t["nurse-a"], status=404)
        problem = await fhir_get(f"{base}/Slot?start=ge{day}", t["nurse-a"], status=400)
        OperationOutcome.parse_obj(problem)
        assert "schedule is required" in problem["issue"][0]["diagnostics"]

        appointment = await fhir_get(f"{base}/Appointment/{booked['appointment_id']}", t["nurse-a"])
        Appointment.parse_obj(appointment)
        assert appointment["status"] == "booked" and appointment["minutesDuration"] == 30
        assert appointment["appointmentType"]["coding"][0]["code"] == "ROUTINE"
        actors = [p["actor"].get("reference") for p in appointment["participant"]]
        assert actors[:2] == [f"Practitioner/{t['expert']}", f"Patient/{booked['patient_id']}"]
        assert {p["status"] for p in appointment["participant"]} == {"accepted"}
        assert appointment["slot"][0]["reference"] == f"Slot/{fhir.slot_id(t['expert'], ms, ms + 1_800_000)}"
        assert {"system": fhir.SYSTEM_CONSULTATION, "value": booked["consultation_id"]} in appointment["identifier"]
        every = entries(await fhir_get(f"{base}/Appointment?practitioner=Practitioner/{t['expert']}", t["nurse-a"]))
        for a in every:
            Appointment.parse_obj(a)
        by_id = {a["id"]: a for a in every}
        assert by_id[str(pending["appointment_id"])]["status"] == "pending"
        assert by_id[str(pending["appointment_id"])]["priority"] == 1
        assert by_id[str(pending["appointment_id"])]["participant"][0]["status"] == "tentative"
        assert by_id[str(cancelled["appointment_id"])]["status"] == "cancelled"
        assert by_id[str(cancelled["appointment_id"])]["cancelationReason"]["text"] == "Family declined"
        only_booked = entries(await fhir_get(f"{base}/Appointment?status=booked&date=ge{day}", t["nurse-a"]))
        assert [a["id"] for a in only_booked] == [str(booked["appointment_id"])]
        assert entries(await fhir_get(f"{base}/Appointment", t["nurse-b"])) == []  # another clinic's
        await fhir_get(f"{base}/Appointment/{booked['appointment_id']}", t["nurse-b"], status=404)
        bad = await fhir_get(f"{base}/Appointment?date=tomorrow", t["nurse-a"], status=400)
        assert "date='tomorrow'" in bad["issue"][0]["diagnostics"]


def test_fhir_date_bounds_and_slot_ids() -> None:
    day = int(datetime(2030, 1, 7, tzinfo=ZoneInfo("UTC")).timestamp() * 1000)
    assert fhir.date_bounds(["ge2030-01-07", "lt2030-01-08"], "start") == (day, day + 86_400_000)
    assert fhir.date_bounds(["2030-01-07"], "date") == (day, day + 86_400_000)
    assert fhir.date_bounds(["gt2030-01-07T00:00:00Z"], "date") == (day + 1, None)
    assert fhir.date_bounds(["le2030-01-07T09:00:00+01:00"], "date") == (None, day + 8 * 3_600_000 + 1)
    assert fhir.parse_slot_id(fhir.slot_id(12, day, day + 1_800_000)) == (12, day, day + 1_800_000)
    assert fhir.parse_slot_id("12-5-5") is None and fhir.parse_slot_id("x-1-2") is None
