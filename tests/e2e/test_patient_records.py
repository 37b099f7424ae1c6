"""A coordinator finds a patient and reads their timeline, in a real browser against real processes (Mosquitto,
HQ, a gateway with a simulated HL7 monitor on a pty): the search by pinyin finds the patient registered with a
Chinese name, the timeline shows the day's readings summarised and the live vitals moving without a reload,
and a DICOM file uploaded on the page appears on the timeline with its key tags."""

from __future__ import annotations

import json
import os
import re
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Page, expect

from tests.support import accounts, dicom_files
from tests.support.ports import eventually
from tests.support.stack import GatewaySpec, SimulatedDevice, Stack

pytestmark = pytest.mark.browser

GW, CLINIC, MRN = "gw-rec", "clinic-rec", "MRN-REC-1"
SPO2 = "MDC_PULS_OXIM_SAT_O2"
COORDINATOR = "coord-li"


def post(stack: Stack, path: str, body: dict[str, Any]) -> Any:
    request = urllib.request.Request(stack.hq_url + path, data=json.dumps(body).encode(), method="POST",
                                     headers={"Content-Type": "application/json",
                                              "Authorization": f"Bearer {stack.admin_token}"})
    with urllib.request.urlopen(request, timeout=10) as resp:
        return json.load(resp)


@pytest.fixture
def stack() -> Iterator[Stack]:
    with Stack() as s:
        s.start_broker()
        s.start_hq()
        accounts.add_user(s.db_url, COORDINATOR, "coordinator", display_name="Coordinator Li")
        s.start_gateway(GatewaySpec(GW, CLINIC, [SimulatedDevice("monitor-1", "hl7", MRN, rate=4, seed=3)],
                                    heartbeat_s=1))
        eventually(lambda: s.hq_get("/api/v1/gateways")["gateways"], 30, "the gateway known at HQ")
        yield s


def test_a_coordinator_finds_a_patient_and_sees_their_timeline_with_live_vitals(
        page: Page, stack: Stack, tmp_path: Path) -> None:
    registered = post(stack, "/api/v1/patients", {
        "clinic_id": CLINIC, "mrn": MRN, "name": "王芳", "alt_name": "Wang Fang", "sex": "female",
        "birth_date": "1961-05-04"})
    pid = registered["patient"]["patient_id"]

    accounts.login(page, stack.hq_url, COORDINATOR, next_path="/patients")
    page.fill("#patient-search input[name=q]", "wang fang")
    page.click("#patient-search button[type=submit]")
    row = page.locator(f'#results tr[data-patient-id="{pid}"]')
    expect(row).to_contain_text("王芳")
    expect(row).to_contain_text(MRN)
    row.locator("a").click()

    expect(page).to_have_url(re.compile(rf"/patients/{pid}$"))
    expect(page.locator("#patient-name")).to_have_text("王芳")
    expect(page.locator("body")).to_have_attribute("data-live", "subscribed", timeout=15_000)
    tile = page.locator(f'.tile[data-patient="{MRN}"][data-clinic="{CLINIC}"][data-metric="{SPO2}"]')
    expect(tile.locator(".value")).to_have_text(re.compile(r"^\d+(\.\d+)?$"), timeout=20_000)
    first_time = tile.locator("time").inner_text()
    page.wait_for_function("([sel, before]) => { const t = document.querySelector(sel); "
                           "return t && t.textContent !== before; }",
                           arg=[f'.tile[data-patient="{MRN}"][data-metric="{SPO2}"] time', first_time],
                           timeout=15_000)  # a new reading arrived live
    expect(page.locator(f'svg.chart[data-metric="{SPO2}"]')).not_to_have_attribute("data-points", re.compile("^[01]$"))
    today = page.locator("section.day").first
    expect(today.locator(f'table.vitals-day tr[data-metric="{SPO2}"]')).to_be_visible()
    assert page.evaluate("performance.getEntriesByType('navigation').length") == 1  # no reload

    dicom = tmp_path / "chest.dcm"
    dicom.write_bytes(dicom_files.ct_slice(patient_name="Wang^Fang", study_description="Chest CT"))
    page.set_input_files("#imaging-upload input[type=file]", str(dicom))
    page.click("#imaging-upload button[type=submit]")
    expect(page.locator("#imaging-upload .upload-state")).to_contain_text("Filed: CT", timeout=15_000)
    entry = page.locator('li.entry[data-type="imaging"]')
    expect(entry).to_contain_text("CT", timeout=15_000)  # the page reloads with the new timeline entry
    expect(entry).to_contain_text("Chest CT")
    expect(entry.locator("a.download")).to_have_attribute("href", re.compile(r"^/api/v1/imaging/\d+/file$"))
    if os.environ.get("E2E_SCREENSHOT_DIR"):
        page.screenshot(path=str(Path(os.environ["E2E_SCREENSHOT_DIR"]) / "timeline.png"), full_page=True)
        page.goto(f"{stack.hq_url}/patients?q=%E7%8E%8B")
        page.screenshot(path=str(Path(os.environ["E2E_SCREENSHOT_DIR"]) / "search.png"), full_page=True)


@pytest.fixture
def hq_only() -> Iterator[Stack]:
    with Stack() as s:
        s.start_broker()
        s.start_hq()
        accounts.add_user(s.db_url, COORDINATOR, "coordinator", display_name="Coordinator Li")
        from hq import db
        from hq.models import clinics

        engine = db.create_engine_for(s.db_url)
        with engine.begin() as conn:
            conn.execute(clinics.insert().values(id=CLINIC, name="Clinic Rec"))
        engine.dispose()
        yield s


def test_a_coordinator_merges_a_duplicate_and_undoes_it(page: Page, hq_only: Stack) -> None:
    first = post(hq_only, "/api/v1/patients", {"clinic_id": CLINIC, "mrn": "R-1", "name": "Wang Fang",
                                               "birth_date": "1961-05-04"})["patient"]["patient_id"]
    second = post(hq_only, "/api/v1/patients", {"clinic_id": CLINIC, "mrn": "R-1", "name": "Wang Fang",
                                                "birth_date": "1961-04-05", "phone": "138"})
    assert second["outcome"] == "created_possible_duplicate"
    dup = second["patient"]["patient_id"]

    accounts.login(page, hq_only.hq_url, COORDINATOR, next_path="/patients")
    page.click("#merge-link")
    candidate = page.locator("#duplicates tbody tr").first
    expect(candidate).to_contain_text("same clinic record number, conflicting birth date")
    candidate.locator("a", has_text="Compare").click()
    expect(page.locator(".compare .side")).to_have_count(2)
    page.fill("#merge-form input[name=reason]", "birth day and month swapped at registration")
    page.click("#merge-form button[type=submit]")
    expect(page).to_have_url(re.compile(rf"/patients/{first}$"))
    expect(page.locator(".merges li")).to_contain_text(f"record {dup}")
    expect(page.locator("#patient-name")).to_have_text("Wang Fang")
    assert hq_only.hq_get(f"/api/v1/patients/{dup}")["patient_id"] == first  # the duplicate answers for it

    page.locator(".merges li form button", has_text="Undo").click()
    expect(page).to_have_url(re.compile(rf"/patients/{dup}$"))
    assert hq_only.hq_get(f"/api/v1/patients/{dup}")["patient_id"] == dup
