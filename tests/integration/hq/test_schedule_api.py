"""The schedule's JSON API and console pages on a running HQ: experts publish their own hours, clinics ask for
proposals and book, the second booking of a slot is a 409, department heads decide extra slots, roles are held
to their reach, bad input is a 400 naming the field."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import aiohttp

from hq import db
from tests.integration.hq.conftest import RunningHq, hq_config, running_hq
from tests.support import accounts, directory, schedule_rows
from tests.support.mosquitto import Mosquitto


def next_monday() -> datetime:
    today = datetime.now(UTC).date()
    day = today + timedelta(days=(7 - today.weekday()) or 7)
    return datetime(day.year, day.month, day.day, tzinfo=UTC)


def seed(db_url: str) -> dict[str, Any]:
    engine = db.create_engine_for(db_url)
    try:
        with engine.begin() as conn:
            schedule_rows.gateway(conn, "gw-a", "clinic-a")
            directory.add_clinic(conn, "clinic-b")
            dept = directory.add_department(conn, "cardiology", "Cardiology")
            expert, _ = schedule_rows.expert(conn, "wang", dept, name="Dr. Wang", time_zone="America/New_York")
            other, _ = schedule_rows.expert(conn, "li", dept, name="Dr. Li", time_zone="Asia/Shanghai")
            schedule_rows.patient(conn, "clinic-a", "MRN-1")
            schedule_rows.user(conn, "nurse-a", "clinic_staff", clinic_id="clinic-a")
            schedule_rows.user(conn, "nurse-b", "clinic_staff", clinic_id="clinic-b")
            schedule_rows.user(conn, "coord", "coordinator")
            schedule_rows.head(conn, "head", dept)
    finally:
        engine.dispose()
    return {"dept": dept, "expert": expert, "other": other,
            **{name: accounts.api_token(db_url, name) for name in ("wang", "li", "nurse-a", "nurse-b", "coord",
                                                                  "head")}}


async def call(hq: RunningHq, method: str, path: str, token: str, body: Any = None, status: int = 200) -> Any:
    async with aiohttp.ClientSession() as http, http.request(
            method, hq.url + path, json=body, headers={"Authorization": f"Bearer {token}"},
            allow_redirects=False) as resp:
        text = await resp.text()
        assert resp.status == status, f"{method} {path}: {resp.status} {text}"
        return await resp.json() if resp.content_type == "application/json" else text


RULES = [{"weekday": d, "start": "09:00", "end": "12:00", "slot_minutes": 30} for d in range(5)]


async def test_publish_propose_book_and_cancel_through_the_api(broker: Mosquitto, db_url: str) -> None:
    async with running_hq(hq_config(broker, db_url)) as hq:
        t = await asyncio.to_thread(seed, db_url)
        path = f"/api/v1/schedule/experts/{t['expert']}/availability"
        await call(hq, "PUT", path, t["li"], {"rules": RULES}, status=403)  # not their own
        await call(hq, "PUT", path, t["nurse-a"], {"rules": RULES}, status=403)
        bad = await call(hq, "PUT", path, t["wang"], {"rules": [{**RULES[0], "end": "25:00"}]}, status=400)
        assert bad["field"] == "rules" and "rules[0]: end '25:00'" in bad["error"]
        published = await call(hq, "PUT", path, t["wang"], {"rules": RULES})
        assert published["time_zone"] == "America/New_York" and len(published["rules"]) == 5
        await call(hq, "PUT", f"/api/v1/schedule/experts/{t['other']}/availability", t["coord"],
                   {"rules": [{"weekday": d, "start": "20:00", "end": "23:00", "slot_minutes": 60} for d in range(7)]})

        monday = next_monday()
        query = f"/api/v1/schedule/proposals?department=cardiology&not_before={monday.date()}&tz=UTC&limit=4"
        proposals = (await call(hq, "GET", query, t["nurse-a"]))["proposals"]
        # Monday 09:00 in New York is 14:00 UTC (13:00 in summer); Shanghai's 20:00 is 12:00 UTC: Dr. Li first.
        assert proposals[0]["expert"]["name"] == "Dr. Li" and proposals[0]["start"].endswith("T12:00:00.000Z")
        assert [p["expert"]["name"] for p in proposals].count("Dr. Wang") >= 1
        await call(hq, "GET", "/api/v1/schedule/proposals?department=astrology", t["nurse-a"], status=400)
        assert (await call(hq, "GET", "/api/v1/schedule/proposals?department=dermatology", t["nurse-a"]))[
            "proposals"] == []  # a department without experts
        missing = await call(hq, "GET", "/api/v1/schedule/proposals?tz=Mars/Base", t["nurse-a"], status=400)
        assert missing["parameter"] == "department"
        await call(hq, "GET", query, t["wang"], status=403)  # experts do not book

        wang_slot = next(p for p in proposals if p["expert"]["name"] == "Dr. Wang")
        booking = {"expert_id": t["expert"], "start": wang_slot["start"], "end": wang_slot["end"], "mrn": "MRN-1",
                   "reason": "Palpitations"}
        booked = await call(hq, "POST", "/api/v1/appointments", t["nurse-a"], booking, status=201)
        assert (booked["status"], booked["clinic_id"], booked["patient_mrn"]) == ("booked", "clinic-a", "MRN-1")
        assert booked["expert_local_start"].endswith(("EST", "EDT")) and booked["consultation_id"]
        taken = await call(hq, "POST", "/api/v1/appointments", t["coord"], {**booking, "clinic_id": "clinic-b",
                                                                           "mrn": None}, status=409)
        assert taken["field"] == "start"
        assert (await call(hq, "POST", "/api/v1/appointments", t["nurse-a"], {**booking, "start": "tomorrow"},
                           status=400))["field"] == "start"
        again = (await call(hq, "GET", query, t["nurse-a"]))["proposals"]
        assert wang_slot["start"] not in [p["start"] for p in again if p["expert"]["name"] == "Dr. Wang"]

        one = f"/api/v1/appointments/{booked['appointment_id']}"
        assert (await call(hq, "GET", one, t["wang"]))["appointment_id"] == booked["appointment_id"]
        await call(hq, "GET", one, t["nurse-b"], status=404)
        assert (await call(hq, "GET", "/api/v1/appointments", t["nurse-b"]))["appointments"] == []
        await call(hq, "GET", "/api/v1/appointments?clinic_id=clinic-a", t["nurse-b"], status=403)
        mine = (await call(hq, "GET", "/api/v1/schedule", t["wang"]))
        assert [a["appointment_id"] for a in mine["appointments"]] == [booked["appointment_id"]]
        assert len(mine["availability"]["rules"]) == 5

        cancelled = await call(hq, "POST", one + "/cancel", t["nurse-a"], {"reason": "Patient better"})
        assert cancelled["status"] == "cancelled"
        await call(hq, "POST", one + "/cancel", t["nurse-a"], {}, status=409)
        rebooked = await call(hq, "POST", "/api/v1/appointments", t["coord"], {**booking, "clinic_id": "clinic-b",
                                                                              "mrn": None}, status=201)
        assert rebooked["clinic_id"] == "clinic-b"
        # Cancelled from its consultation instead: the appointment goes with it and the slot is free again.
        withdraw = f"/api/v1/consultations/{rebooked['consultation_id']}/cancel"
        await call(hq, "POST", withdraw, t["nurse-a"], {"reason": "not ours"}, status=404)  # another clinic's
        withdrawn = await call(hq, "POST", withdraw, t["coord"], {"reason": "Booked twice"})
        assert withdrawn["status"] == "cancelled"
        gone = await call(hq, "GET", f"/api/v1/appointments/{rebooked['appointment_id']}", t["coord"])
        assert (gone["status"], gone["cancel_reason"]) == ("cancelled", "Booked twice")
        await call(hq, "POST", withdraw, t["coord"], {}, status=400)  # nothing left to cancel
        assert (await call(hq, "POST", "/api/v1/appointments", t["nurse-a"], booking, status=201))["status"] == "booked"


async def test_extra_slots_and_exceptions_through_the_api(broker: Mosquitto, sqlite_url: str) -> None:
    async with running_hq(hq_config(broker, sqlite_url)) as hq:
        t = await asyncio.to_thread(seed, sqlite_url)
        await call(hq, "PUT", f"/api/v1/schedule/experts/{t['expert']}/availability", t["wang"], {"rules": RULES})
        monday = next_monday()
        evening = (monday + timedelta(hours=23)).isoformat()
        extra = {"expert_id": t["expert"], "start": evening,
                 "end": (monday + timedelta(hours=23, minutes=30)).isoformat(), "reason": "Unstable angina"}
        pending = await call(hq, "POST", "/api/v1/appointments/urgent", t["nurse-a"], extra, status=201)
        assert pending["status"] == "pending_approval" and pending["urgent_extra"]
        one = f"/api/v1/appointments/{pending['appointment_id']}"
        await call(hq, "POST", one + "/approve", t["coord"], {}, status=403)  # role
        await call(hq, "POST", one + "/approve", hq.admin_token, {}, status=403)  # not a head of cardiology
        approvals = (await call(hq, "GET", "/api/v1/schedule", t["head"]))["approvals"]
        assert [a["appointment_id"] for a in approvals] == [pending["appointment_id"]]
        approved = await call(hq, "POST", one + "/approve", t["head"], {"note": "ok"})
        assert approved["status"] == "booked" and approved["consultation_id"]

        leave = {"kind": "leave", "starts": evening, "ends": (monday + timedelta(days=1)).isoformat(), "note": "Away"}
        added = await call(hq, "POST", f"/api/v1/schedule/experts/{t['expert']}/exceptions", t["wang"], leave,
                           status=201)
        assert [c["appointment_id"] for c in added["overlapping_appointments"]] == [pending["appointment_id"]]
        shown = await call(hq, "GET", f"/api/v1/schedule/experts/{t['expert']}/availability", t["nurse-a"])
        assert [x["kind"] for x in shown["exceptions"]] == ["leave"]
        await call(hq, "DELETE", f"/api/v1/schedule/exceptions/{added['exception_id']}", t["li"], status=404)
        await call(hq, "DELETE", f"/api/v1/schedule/exceptions/{added['exception_id']}", t["wang"])
        free = await call(hq, "GET", f"/api/v1/schedule/experts/{t['expert']}/slots?from={monday.isoformat()}"
                                     f"&to={(monday + timedelta(days=1)).isoformat()}".replace("+", "%2B"),
                          t["nurse-a"])
        assert len(free["slots"]) == 6


async def test_console_pages_for_each_role_and_a_booking_by_form(broker: Mosquitto, sqlite_url: str) -> None:
    async with running_hq(hq_config(broker, sqlite_url)) as hq:
        t = await asyncio.to_thread(seed, sqlite_url)
        await call(hq, "PUT", f"/api/v1/schedule/experts/{t['expert']}/availability", t["wang"], {"rules": RULES})
        for who in ("wang", "nurse-a", "coord", "head"):
            text = await call(hq, "GET", "/schedule", t[who])
            assert "<h1>Schedule</h1>" in text
        assert "Request a consultation" in await call(hq, "GET", "/schedule", t["nurse-a"])
        assert "Request a consultation" not in await call(hq, "GET", "/schedule", t["wang"])
        page = await call(hq, "GET", f"/schedule/proposals?expert_id={t['expert']}&tz=Asia/Shanghai", t["nurse-a"])
        assert page.count("class=\"book\"") == 6
        wrong = await call(hq, "GET", "/schedule/proposals?department=nothing", t["nurse-a"], status=400)
        assert "no department is called &#x27;nothing&#x27;" in wrong
        editor = await call(hq, "GET", f"/schedule/experts/{t['expert']}", t["wang"])
        assert "Mon 09:00-12:00 30" in editor and "id=\"publish\"" in editor
        assert "id=\"publish\"" not in await call(hq, "GET", f"/schedule/experts/{t['expert']}", t["nurse-a"])
        monday = next_monday()
        nine = int(datetime(monday.year, monday.month, monday.day, 9, tzinfo=ZoneInfo("America/New_York"))
                   .timestamp() * 1000)
        form = {"expert_id": str(t["expert"]), "start": str(nine), "end": str(nine + 1_800_000), "mrn": "MRN-1",
                "csrf_token": "ignored with a bearer token"}
        async with aiohttp.ClientSession() as http, http.post(
                hq.url + "/schedule/book", data=form, allow_redirects=False,
                headers={"Authorization": f"Bearer {t['nurse-a']}"}) as resp:
            assert resp.status == 303, await resp.text()
            assert resp.headers["Location"].startswith("/schedule/appointments/")
        refused = await call(hq, "POST", "/api/v1/appointments", t["nurse-a"],
                             {"expert_id": t["expert"], "start": nine, "end": nine + 1_800_000}, status=409)
        assert "booked already" in refused["error"]
        listing = await call(hq, "GET", "/api/v1/appointments", t["nurse-a"])
        [appointment] = listing["appointments"]
        detail = await call(hq, "GET", f"/schedule/appointments/{appointment['appointment_id']}", t["nurse-a"])
        assert "waiting for the clinic's gateway to confirm" in detail and "Move here" in detail
        await call(hq, "GET", f"/schedule/appointments/{appointment['appointment_id']}", t["nurse-b"], status=404)
