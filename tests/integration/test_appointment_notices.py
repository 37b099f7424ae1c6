"""Appointments reach the clinic over real processes: a booking's confirmation, its reminder, a move and a
cancellation travel from HQ through Mosquitto to the clinic's gateway, which shows them on its staff screen
(in the clinic's own time zone) and confirms them back through its outbox; HQ then marks the booking confirmed.
A booking made while the gateway is offline reaches it when it returns."""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest

from hq import db
from tests.support import accounts, directory, schedule_rows
from tests.support.ports import eventually
from tests.support.stack import GatewaySpec, Stack

GW = "gw-sched"
CLINIC = "clinic-s"
HALF_HOUR_MS = 1_800_000


def request(stack: Stack, method: str, path: str, token: str, body: Any = None) -> Any:
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(stack.hq_url + path, data=data, method=method,
                                 headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return json.load(resp)
    except urllib.error.HTTPError as exc:
        raise AssertionError(f"{method} {path}: {exc.code} {exc.read().decode()}") from None


def screen(stack: Stack, path: str) -> Any:
    with urllib.request.urlopen(f"http://127.0.0.1:{stack.gateway_http_ports[GW]}{path}", timeout=5) as resp:
        body = resp.read().decode()
        return json.loads(body) if resp.headers.get_content_type() == "application/json" else body


def clinic_appointments(stack: Stack) -> dict[int, dict[str, Any]]:
    return {a["appointment_id"]: a for a in screen(stack, "/api/v1/appointments")["appointments"]}


@pytest.fixture
def stack() -> Iterator[Stack]:
    with Stack(hq_extra_config="[scheduling]\nreminder_before_s = 3600\nreminder_poll_s = 0.5\n") as s:
        s.start_broker()
        s.start_hq()
        engine = db.create_engine_for(s.db_url)
        try:
            with engine.begin() as conn:
                directory.add_clinic(conn, CLINIC)
                dept = directory.add_department(conn, "cardiology")
                expert, _ = schedule_rows.expert(conn, "tanaka", dept, name="Dr. Tanaka", time_zone="Asia/Tokyo")
                schedule_rows.every_day(conn, expert, "00:00", "24:00", 30)
                schedule_rows.patient(conn, CLINIC, "MRN-9")
                schedule_rows.user(conn, "nurse", "clinic_staff", clinic_id=CLINIC)
        finally:
            engine.dispose()
        s.start_gateway(GatewaySpec(GW, CLINIC, [], heartbeat_s=1, timezone="America/Sao_Paulo"))
        eventually(lambda: s.hq_get("/api/v1/gateways")["gateways"], what="gateway known at HQ")
        yield s


def slot_after(minutes: int) -> int:
    now = int(time.time() * 1000) + minutes * 60_000
    return -(-now // HALF_HOUR_MS) * HALF_HOUR_MS


def test_confirmation_reminder_move_and_cancel_reach_the_clinics_screen(stack: Stack) -> None:
    nurse = accounts.api_token(stack.db_url, "nurse")
    start = slot_after(5)  # 5 to 35 minutes ahead, inside the reminder lead: the reminder follows at once
    booked = request(stack, "POST", "/api/v1/appointments", nurse,
                     {"expert_id": 1, "start": start, "end": start + HALF_HOUR_MS, "mrn": "MRN-9",
                      "reason": "Murmur"})
    one = f"/api/v1/appointments/{booked['appointment_id']}"
    confirmed = eventually(lambda: request(stack, "GET", one, nurse)["confirmed"], 20, "confirmed by the gateway")
    assert confirmed
    shown = eventually(lambda: clinic_appointments(stack).get(booked["appointment_id"], {}).get("reminded_ms"), 20,
                       "reminder on the clinic's screen")
    assert shown
    on_screen = clinic_appointments(stack)[booked["appointment_id"]]
    assert (on_screen["status"], on_screen["start_ms"], on_screen["expert_name"], on_screen["patient_mrn"]) == (
        "booked", start, "Dr. Tanaka", "MRN-9")
    assert request(stack, "GET", one, nurse)["reminded"] is not None
    page = screen(stack, "/appointments")
    assert "Dr. Tanaka" in page and "clinic time (America/Sao_Paulo)" in page and "reminded" in page
    assert "-03" in page  # São Paulo's abbreviation: the time is the clinic's, not the expert's or UTC

    later = start + 4 * HALF_HOUR_MS
    moved = request(stack, "POST", one + "/reschedule", nurse, {"start": later, "end": later + HALF_HOUR_MS})
    assert moved["confirmed"] is None  # the new time is not confirmed until the gateway has it
    eventually(lambda: clinic_appointments(stack)[booked["appointment_id"]]["start_ms"] == later, 20, "move shown")
    assert clinic_appointments(stack)[booked["appointment_id"]]["reminded_ms"] is None  # the new time: not yet
    eventually(lambda: request(stack, "GET", one, nurse)["confirmed"], 20, "move confirmed")

    request(stack, "POST", one + "/cancel", nurse, {"reason": "Transferred"})
    cancelled = eventually(lambda: clinic_appointments(stack)[booked["appointment_id"]]["status"] == "cancelled", 20,
                           "cancellation shown")
    assert cancelled and clinic_appointments(stack)[booked["appointment_id"]]["note"] == "Transferred"


def test_a_booking_made_while_the_gateway_is_offline_arrives_when_it_returns(stack: Stack) -> None:
    nurse = accounts.api_token(stack.db_url, "nurse")
    stack.stop_process(f"gw-{GW}")
    eventually(lambda: stack.hq_get("/api/v1/gateways")["gateways"][0]["status"] == "offline", 20, "offline")
    start = slot_after(24 * 60)
    booked = request(stack, "POST", "/api/v1/appointments", nurse,
                     {"expert_id": 1, "start": start, "end": start + HALF_HOUR_MS})
    time.sleep(2)
    assert request(stack, "GET", f"/api/v1/appointments/{booked['appointment_id']}", nurse)["confirmed"] is None
    stack.restart_gateway(GW)
    eventually(lambda: request(stack, "GET", f"/api/v1/appointments/{booked['appointment_id']}", nurse)["confirmed"],
               30, "confirmed after the gateway returned")
    assert clinic_appointments(stack)[booked["appointment_id"]]["status"] == "booked"
