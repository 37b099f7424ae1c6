"""Booking a slot, in real browsers and real processes (Mosquitto, HQ, the clinic's gateway): an expert in
Berlin publishes their weekly hours in the console, a nurse of a clinic in Shanghai asks for the department's
earliest slots, books one, and sees the confirmation arrive from the clinic's gateway; the gateway's inbox and
its staff screen have the booking, and the expert's console was told live."""

from __future__ import annotations

import json
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest
from playwright.sync_api import Browser, expect

from hq import db
from tests.support import accounts, directory, schedule_rows
from tests.support.ports import eventually
from tests.support.stack import GatewaySpec, Stack

pytestmark = pytest.mark.browser

GW, CLINIC, MRN = "gw-book-1", "clinic-shanghai", "MRN-E2E-1"
EXPERT, NURSE = "dr-weber", "nurse-li"
RULES = "\n".join(f"{day} 00:00-24:00 30" for day in ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"))


def gateway_json(stack: Stack, path: str) -> Any:
    with urllib.request.urlopen(f"http://127.0.0.1:{stack.gateway_http_ports[GW]}{path}", timeout=5) as resp:
        return json.load(resp)


@pytest.fixture(scope="module")
def stack() -> Iterator[Stack]:
    with Stack() as s:
        s.start_broker()
        s.start_hq()
        engine = db.create_engine_for(s.db_url)
        try:
            with engine.begin() as conn:
                dept = directory.add_department(conn, "cardiology")
                schedule_rows.expert(conn, EXPERT, dept, name="Dr. Anna Weber", time_zone="Europe/Berlin",
                                     password=accounts.PASSWORD)
                schedule_rows.patient(conn, CLINIC, MRN, name="Li Hua")
                schedule_rows.user(conn, NURSE, "clinic_staff", clinic_id=CLINIC, password=accounts.PASSWORD)
        finally:
            engine.dispose()
        s.start_gateway(GatewaySpec(GW, CLINIC, [], heartbeat_s=1, timezone="Asia/Shanghai"))
        eventually(lambda: s.hq_get("/api/v1/gateways")["gateways"], 30, "the gateway known at HQ")
        yield s


def test_a_clinic_books_a_slot_and_its_gateway_confirms_it(browser: Browser, stack: Stack) -> None:
    expert = browser.new_context(timezone_id="Europe/Berlin").new_page()
    accounts.login(expert, stack.hq_url, EXPERT, next_path="/schedule")
    expert.click("#my-availability")
    expect(expert.locator("#zone")).to_have_text("Europe/Berlin")
    expert.fill("textarea[name=rules]", RULES)
    expert.click("#publish")
    expect(expert.locator("#rules li")).to_have_count(7)
    expect(expert.locator("#rules")).to_contain_text("Monday 00:00-24:00, 30-minute slots")
    expert.goto(stack.hq_url + "/schedule")
    expect(expert.locator("#live-state")).to_have_text("live", timeout=10_000)

    nurse = browser.new_context(timezone_id="Asia/Shanghai").new_page()
    accounts.login(nurse, stack.hq_url, NURSE, next_path="/schedule")
    expect(nurse.locator("#request input[name=tz]")).to_have_value("Asia/Shanghai")  # the browser's zone
    nurse.select_option("#request select[name=department]", "cardiology")
    nurse.click("#request button[type=submit]")
    proposals = nurse.locator("#proposals li.proposal")
    expect(proposals.first).to_be_visible()
    assert proposals.count() == 3  # [scheduling] proposals_per_expert: one expert, three choices
    first = proposals.first
    expect(first).to_contain_text("Dr. Anna Weber")
    expect(first).to_contain_text("for the expert")
    start_ms = int(first.get_attribute("data-start") or 0)
    first.locator("input[name=mrn]").fill(MRN)
    first.locator("input[name=reason]").fill("Palpitations at night")
    first.locator("button.book").click()

    expect(nurse.locator("h1")).to_contain_text("Appointment #")
    expect(nurse.locator("#status")).to_have_text("Booked")
    # Live: the clinic's gateway stores the confirmation and its receipt comes back through the outbox.
    expect(nurse.locator("#confirmation")).to_contain_text("delivered to the clinic's gateway", timeout=30_000)
    appointment_id = int(nurse.locator("table.appointment-facts").get_attribute("data-appointment") or 0)

    notices = gateway_json(stack, "/api/v1/notices?kind=appointment.confirmed")["notices"]
    assert [(n["body"]["appointment_id"], n["body"]["start_ms"], n["body"]["patient_mrn"]) for n in notices] == [
        (appointment_id, start_ms, MRN)]
    on_screen = {a["appointment_id"]: a for a in gateway_json(stack, "/api/v1/appointments")["appointments"]}
    assert on_screen[appointment_id]["status"] == "booked"

    screen = browser.new_context().new_page()
    screen.goto(f"http://127.0.0.1:{stack.gateway_http_ports[GW]}/appointments")
    item = screen.locator(f"li.appointment[data-appointment='{appointment_id}']")
    expect(item).to_contain_text("Dr. Anna Weber")
    expect(item).to_contain_text("booked")
    expect(screen.locator("main")).to_contain_text("clinic time (Asia/Shanghai)")

    # The expert's console heard of the booking and of its delivery without a reload.
    events = expert.locator(f"#live-events li[data-appointment='{appointment_id}']")
    expect(events.first).to_be_visible(timeout=10_000)
    expect(expert.locator("#live-events")).to_contain_text("booked")
    expert.reload()
    expect(expert.locator(f"#appointments tr[data-appointment='{appointment_id}'] .confirmation")).to_contain_text(
        "delivered to the clinic's gateway")
