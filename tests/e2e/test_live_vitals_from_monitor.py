"""The whole chain in a real browser: a simulated bedside monitor on a pseudo-terminal -> gateway ->
Mosquitto -> HQ -> the console page, whose live SpO2 tile must change without a reload."""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote

import pytest
from playwright.sync_api import Page, expect

from tests.support import accounts
from tests.support.stack import ADMIN, GatewaySpec, SimulatedDevice, Stack

pytestmark = pytest.mark.browser

PATIENT = "P-CHAIN-1"
SPO2 = "MDC_PULS_OXIM_SAT_O2"


@pytest.fixture
def stack() -> Iterator[Stack]:
    with Stack() as s:
        s.start_broker()
        s.start_hq()
        s.start_gateway(GatewaySpec("gw-chain", "clinic-chain", [
            SimulatedDevice("monitor-1", "hl7", PATIENT, rate=4, seed=7),
            SimulatedDevice("oxi-1", "masimo", "P-CHAIN-2", rate=2, seed=8),
        ], heartbeat_s=1))
        yield s


def test_console_shows_a_monitors_vitals_changing_live(page: Page, stack: Stack) -> None:
    # The device's patient id at the clinic leads to the HQ patient's page (made from the readings).
    lookup = quote(f"/patients/lookup?clinic_id=clinic-chain&mrn={PATIENT}", safe="/")
    accounts.login(page, stack.hq_url, ADMIN, next_path=lookup)
    expect(page.locator("body")).to_have_attribute("data-live", "subscribed", timeout=15_000)
    value = page.locator(f'.tile[data-patient="{PATIENT}"][data-metric="{SPO2}"] .value')
    expect(value).to_have_text(re.compile(r"^\d+(\.\d+)?$"), timeout=20_000)
    first = value.inner_text()
    first_time = page.locator(f'.tile[data-patient="{PATIENT}"][data-metric="{SPO2}"] time').inner_text()
    # A new reading arrives every 250 ms; the tile's time (and usually its value) must move without reload.
    page.wait_for_function(
        """([sel, before]) => { const t = document.querySelector(sel); return t && t.textContent !== before; }""",
        arg=[f'.tile[data-patient="{PATIENT}"][data-metric="{SPO2}"] time', first_time], timeout=15_000)
    readings = set()
    for _ in range(40):
        readings.add(value.inner_text())
        if len(readings) > 1:
            break
        page.wait_for_timeout(250)
    assert len(readings) > 1, f"SpO2 tile stuck at {first}"
    chart_points = page.locator(f'svg.chart[data-metric="{SPO2}"]').get_attribute("data-points")
    assert chart_points is not None and int(chart_points) > 1
    if os.environ.get("E2E_SCREENSHOT_DIR"):
        page.screenshot(path=str(Path(os.environ["E2E_SCREENSHOT_DIR"]) / "patient.png"), full_page=True)
        page.goto(stack.hq_url + "/")
        expect(page.locator('.gateway[data-gateway="gw-chain"] .badge')).to_have_text("online", timeout=10_000)
        page.screenshot(path=str(Path(os.environ["E2E_SCREENSHOT_DIR"]) / "fleet.png"), full_page=True)
