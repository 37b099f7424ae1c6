"""Fleet administration in a real browser, as a coordinator: create an enrolment token (shown once), enrol a real
gateway with it, change its HQ-managed settings and watch them go from pending to applied, then revoke it."""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest
from playwright.sync_api import Page, expect

from tests.support import accounts
from tests.support.ports import eventually
from tests.support.stack import GatewaySpec, SimulatedDevice, Stack

pytestmark = pytest.mark.browser

GW = "gw-web"
DEVICE = "oxi-web"


@pytest.fixture
def stack() -> Iterator[Stack]:
    with Stack() as s:
        s.start_broker()
        s.start_hq()
        accounts.add_user(s.db_url, "coord", "coordinator", display_name="Clinic Coordinator")
        yield s


def test_a_coordinator_enrols_configures_and_revokes_a_gateway(page: Page, stack: Stack) -> None:
    accounts.login(page, stack.hq_url, "coord", next_path="/enrolment")
    page.fill("#new-token input[name=gateway_id]", GW)
    page.fill("#new-token input[name=clinic_id]", "clinic-w")
    page.click("#new-token button[type=submit]")
    token = page.locator("#token-value").inner_text().strip()
    assert token.startswith("cgw1_")
    expect(page.locator("#token")).to_contain_text("cannot show it again")
    page.goto(stack.hq_url + "/enrolment")  # shown once: the page does not show it again
    expect(page.locator("#token")).to_have_count(0)

    spec = GatewaySpec(GW, "clinic-w", [SimulatedDevice(DEVICE, "masimo", "P-0200", rate=2, seed=5)], heartbeat_s=5)
    stack.write_gateway_config(GatewaySpec(GW, "clinic-w", []))  # what enrolment reads; devices come later
    done = stack.enrol_gateway(GW, token)
    assert done.returncode == 0, done.stderr
    stack.start_gateway(spec)  # its certificate is in place: it connects with it
    eventually(lambda: any(g["gateway_id"] == GW and g["devices"]
                           for g in stack.hq_get("/api/v1/gateways")["gateways"]),  # type: ignore[union-attr]
               what="the enrolled gateway reporting at HQ")

    page.goto(stack.hq_url + "/")
    card = page.locator(f'.gateway[data-gateway="{GW}"]')
    expect(card.locator(".certificate")).to_contain_text("enrolled")
    card.locator("a.manage").click()
    expect(page.locator("h1")).to_contain_text(GW)
    expect(page.locator("#certificate .expires")).to_have_text(re.compile(r"^\d{4}-\d\d-\d\dT"))
    page.fill("#settings input[name=heartbeat_s]", "2")
    page.fill(f'#settings input[name="silent_after_s.{DEVICE}"]', "4")
    page.click("#settings button[type=submit]")
    expect(page.locator("#note")).to_contain_text("Version 1 sent")
    expect(page.locator("#config-state")).to_have_attribute("data-state", re.compile("pending|applied"))
    for _ in range(60):  # the gateway answers over its outbox within a few seconds
        if page.locator("#config-state").get_attribute("data-state") == "applied":
            break
        page.wait_for_timeout(500)
        page.reload()
    expect(page.locator("#config-state")).to_have_attribute("data-state", "applied")
    expect(page.locator('#versions tr[data-version="1"] .state')).to_have_text("applied")
    expect(page.locator(".running")).to_have_text("v1", timeout=15_000)

    page.fill("#revoke input[name=reason]", "left the chain")
    page.click("#revoke button[type=submit]")
    expect(page.locator("#note")).to_contain_text("The broker dropped the gateway")
    expect(page.locator("#certificate .revoked")).not_to_have_text("no")
    expect(page.locator("#settings")).to_have_count(0)  # nothing more to manage
