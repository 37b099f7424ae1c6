"""An emergency from one click on a real gateway's staff screen to an expert in the console, in real browsers
and real processes (Mosquitto, HQ, the gateway with a simulated monitor, its WAN through a proxy the test cuts):
the expert sees the offer live and accepts it, the clinic's screen says who accepted; a click while the link is
cut is queued and delivered when it returns; the expert writes the structured advice and the report in the
console, the clinic's screen shows the report and the clinic rates it and records the adoption there."""

from __future__ import annotations

import json
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest
from playwright.sync_api import Browser, Page, expect

from tests.support import accounts, consult_experts
from tests.support.netproxy import CutMode, NetProxy
from tests.support.ports import eventually
from tests.support.stack import GatewaySpec, SimulatedDevice, Stack

pytestmark = pytest.mark.browser

GW, CLINIC, PATIENT = "gw-e2e-1", "clinic-e2e", "P-E2E-7"
EXPERT, EXPERT_NAME = "wang", "Dr. Wang Wei"


class Clinic:
    def __init__(self, stack: Stack, proxy: NetProxy) -> None:
        self.stack = stack
        self.proxy = proxy
        self.url = f"http://127.0.0.1:{stack.gateway_http_ports[GW]}"

    def get(self, path: str) -> Any:
        with urllib.request.urlopen(self.url + path, timeout=5) as resp:
            return json.load(resp)

    def post(self, path: str, body: dict[str, Any]) -> Any:
        request = urllib.request.Request(self.url + path, data=json.dumps(body).encode(), method="POST",
                                         headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=5) as resp:
            return json.load(resp)


@pytest.fixture(scope="module")
def clinic() -> Iterator[Clinic]:
    with Stack() as stack:
        stack.start_broker()
        stack.start_hq()
        consult_experts.seed_experts(stack.db_url, [], clinic_id=CLINIC)
        engine_url = stack.db_url
        from hq import db
        from tests.support import directory

        engine = db.create_engine_for(engine_url)
        with engine.begin() as conn:
            consult_experts.add_expert_with_account(conn, EXPERT, directory.add_department(conn, "emergency"),
                                                    name=EXPERT_NAME)
        engine.dispose()
        proxy = stack.broker_proxy()
        stack.start_gateway(GatewaySpec(GW, CLINIC, [SimulatedDevice("monitor-1", "hl7", PATIENT, seed=7)],
                                        heartbeat_s=1, keepalive_s=5, broker_via=proxy))
        eventually(lambda: stack.hq_get("/api/v1/gateways")["gateways"], 30, "the gateway known at HQ")
        yield Clinic(stack, proxy)


def expert_console(browser: Browser, clinic: Clinic) -> Page:
    page = browser.new_context().new_page()
    accounts.login(page, clinic.stack.hq_url, EXPERT, next_path="/consultations")
    expect(page.locator("#live-state")).to_have_text("live", timeout=10_000)
    return page


def test_one_click_reaches_the_expert_live_and_the_clinic_sees_who_accepted_also_after_an_outage(
        browser: Browser, clinic: Clinic) -> None:
    expert = expert_console(browser, clinic)
    screen = browser.new_context().new_page()
    screen.goto(clinic.url + "/")
    sos = screen.locator(f"li.patient[data-mrn='{PATIENT}'] button.sos")
    expect(sos).to_be_visible(timeout=15_000)  # the monitor's readings make the patient appear
    sos.click()
    expect(screen.locator("#state")).to_contain_text("Received by HQ", timeout=10_000)
    public_id = screen.url.rsplit("/", 1)[1]
    expect(screen.locator("#vitals")).to_contain_text("MDC_PULS_OXIM_SAT_O2")

    offer = expert.locator(f".offer[data-public-id='{public_id}']")
    expect(offer).to_be_visible(timeout=10_000)  # live: the page was not reloaded
    expect(offer.locator(".reasons")).to_contain_text("available now")
    offer.locator("button.accept").click()
    expect(expert).to_have_url(f"{clinic.stack.hq_url}/consultations/{public_id}", timeout=10_000)
    expect(expert.locator("#status .badge")).to_have_attribute("data-status", "accepted")
    expect(screen.locator("#state")).to_have_text(f"Accepted by {EXPERT_NAME}",
                                                  timeout=15_000)

    # The same click with the clinic's link to the broker cut: queued on the gateway, delivered on return.
    clinic.proxy.cut(CutMode.RESET)
    screen.goto(clinic.url + "/")
    expect(screen.locator("#link-state")).to_contain_text("offline", timeout=20_000)
    expert.goto(clinic.stack.hq_url + "/consultations")
    expect(expert.locator("#live-state")).to_have_text("live", timeout=10_000)
    screen.locator(f"li.patient[data-mrn='{PATIENT}'] button.sos").click()
    expect(screen.locator("#state")).to_have_text("Queued: will be sent when the link to HQ returns")
    queued_id = screen.url.rsplit("/", 1)[1]
    expert.wait_for_timeout(2000)
    expect(expert.locator(f".offer[data-public-id='{queued_id}']")).to_have_count(0)
    clinic.proxy.restore()
    offer = expert.locator(f".offer[data-public-id='{queued_id}']")
    expect(offer).to_be_visible(timeout=30_000)
    offer.locator("button.accept").click()
    expect(screen.locator("#state")).to_have_text(f"Accepted by {EXPERT_NAME}",
                                                  timeout=20_000)
    expect(screen.locator("#link-state")).to_contain_text("connected")


def test_the_expert_writes_advice_and_the_report_in_the_console_and_the_clinic_receives_it(
        browser: Browser, clinic: Clinic) -> None:
    public_id = clinic.post("/api/v1/emergency", {"mrn": PATIENT, "requested_by": "Nurse Zhang"})["public_id"]
    clinic.post(f"/api/v1/consultations/{public_id}/form", {
        "chief_complaint": "胸痛2小时", "preliminary_diagnosis": "ACS", "question": "溶栓还是转运?"})
    token = accounts.api_token(clinic.stack.db_url, EXPERT)
    eventually(lambda: clinic.stack.hq_get("/api/v1/offers", token)["offers"], 20, "the offer at HQ")
    request = urllib.request.Request(f"{clinic.stack.hq_url}/api/v1/consultations/{public_id}/accept", method="POST",
                                     headers={"Authorization": f"Bearer {token}"})
    urllib.request.urlopen(request, timeout=10).close()

    expert = expert_console(browser, clinic)
    expert.goto(f"{clinic.stack.hq_url}/consultations/{public_id}")
    expect(expert.locator("#form")).to_contain_text("胸痛2小时", timeout=15_000)
    for stage in ("identity_check", "case_presentation", "discussion", "opinion"):
        expert.locator(f"button.stage[data-stage='{stage}']").click()
        expect(expert.locator(f"#stages li[data-stage='{stage}']")).to_have_class("current")
    expert.fill("#chat-form input[name=body]", "请做12导联心电图")
    expert.click("#chat-form button")
    expect(expert.locator("#chat")).to_contain_text("请做12导联心电图")

    diagnosis = expert.locator("fieldset[data-kind=diagnosis]")
    diagnosis.locator("input[name=code]").fill("I21.9")
    diagnosis.locator("button.add").click()
    drug = expert.locator("fieldset[data-kind=drug]")
    drug.locator("input[name=name]").fill("阿司匹林 Aspirin")
    drug.locator("input[name=dose]").fill("300")  # no unit: the server says which field is wrong
    drug.locator("select[name=route]").select_option("oral")
    drug.locator("input[name=frequency]").fill("stat")
    drug.locator("input[name=duration]").fill("single dose")
    drug.locator("button.add").click()
    expert.click("#save-advice")
    expect(expert.locator("#advice-error")).to_contain_text("items[1].dose")
    expert.locator("#advice-items li.drug button.remove").click()
    drug.locator("input[name=name]").fill("阿司匹林 Aspirin")
    drug.locator("input[name=dose]").fill("300 mg")
    drug.locator("input[name=frequency]").fill("stat")
    drug.locator("input[name=duration]").fill("single dose")
    drug.locator("button.add").click()
    procedure = expert.locator("fieldset[data-kind=procedure]")
    procedure.locator("input[name=name]").fill("转运 Transfer")
    procedure.locator("textarea[name=steps]").fill("建立静脉通路\n联系120\n持续心电监护")
    procedure.locator("button.add").click()
    expert.fill("#opinion", "考虑急性下壁心肌梗死，建议立即转运至胸痛中心。")
    expert.click("#issue-report")
    expect(expert.locator("#reports li[data-version='1']")).to_be_visible(timeout=15_000)
    expect(expert.locator("#advice-saved")).to_contain_text("3 items")

    screen = browser.new_context().new_page()
    screen.goto(f"{clinic.url}/consultations/{public_id}")
    expect(screen.locator("#state")).to_have_text(f"Report received from {EXPERT_NAME}", timeout=20_000)
    report = screen.frame_locator("iframe.report-frame")
    expect(report.locator("body")).to_contain_text("阿司匹林 Aspirin", timeout=10_000)
    expect(report.locator("body")).to_contain_text("I21.9")
    expect(report.locator("ol.steps")).to_contain_text("联系120")
    screen.select_option("#rating-form select[name=rating]", "4")
    screen.click("#rating-form button")
    expect(screen.locator("#rating")).to_contain_text("Rated 4/5")
    screen.select_option("#adoption-form select[name=adopted]", "yes")
    screen.click("#adoption-form button")
    expect(screen.locator("#adoption")).to_contain_text("Advice adopted")

    def at_hq() -> Any:
        c = clinic.stack.hq_get(f"/api/v1/consultations/{public_id}")["consultation"]
        return c["rating"] == 4 and c["advice_adopted"] is True
    eventually(at_hq, 20, "the rating and the adoption at HQ, from the gateway's events")
    reports = clinic.stack.hq_get(f"/api/v1/consultations/{public_id}")["reports"]
    eventually(lambda: clinic.stack.hq_get(f"/api/v1/consultations/{public_id}")["reports"][0]["delivered"], 20,
               "the gateway's receipt of the report")
    assert reports[0]["version"] == 1
