"""The web console in a real browser: HQ as a process, real Mosquitto and SQLite, a gateway publishing
batches; tiles and trend charts must update live, without reloading the page."""

from __future__ import annotations

import json
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO
from urllib.parse import quote

import paho.mqtt.client as paho
import pytest
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion
from playwright.sync_api import Page, expect

from gateway import wire
from tests.support import accounts
from tests.support.mosquitto import Mosquitto
from tests.support.ports import free_port, wait_http_ok

pytestmark = pytest.mark.browser

REPO = Path(__file__).resolve().parents[2]
PATIENT = "P-E2E-1"
SPO2 = "MDC_PULS_OXIM_SAT_O2"


@dataclass
class Hq:
    """HQ as a process, which a test may stop and start again (same port, database and log)."""

    url: str
    config: Path
    log: BinaryIO
    token: str = ""  # the coordinator's API token; the browser logs in as the same user
    proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.proc = subprocess.Popen([sys.executable, "-m", "hq", "serve", "--config", str(self.config)], cwd=REPO,
                                     stdout=self.log, stderr=subprocess.STDOUT)
        wait_http_ok(f"{self.url}/healthz", timeout_s=30)

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            self.proc.wait(15)
            self.proc = None


@pytest.fixture
def hq(broker: Mosquitto, tmp_path: Path) -> Iterator[Hq]:
    port = free_port()
    config = tmp_path / "hq.toml"
    db_url = f"sqlite:///{tmp_path / 'hq.db'}"
    config.write_text(f'[database]\nurl = "{db_url}"\n[mqtt]\nhost = "{broker.host}"\nport = {broker.port}\n'
                      f'[http]\nport = {port}\n[auth]\nsecure_cookies = false\n')
    with (tmp_path / "hq.log").open("wb") as log:
        server = Hq(f"http://127.0.0.1:{port}", config, log)
        server.start()
        try:
            server.token = accounts.user_with_token(db_url, "coordinator", "coordinator")
            yield server
        finally:
            server.stop()


class Gateway:
    """A synchronous stand-in gateway (paho with its own thread) for a synchronous browser test."""

    def __init__(self, broker: Mosquitto, gateway_id: str = "gw-e2e") -> None:
        self.gateway_id = gateway_id
        self.seq = 0
        self.client = paho.Client(CallbackAPIVersion.VERSION2, client_id=gateway_id,
                                  protocol=MQTTProtocolVersion.MQTTv5)
        self.client.connect(broker.host, broker.port)
        self.client.loop_start()

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()

    def status(self, backlog: dict[wire.Lane, wire.LaneBacklog] | None = None) -> None:
        now = int(time.time() * 1000)
        payload = wire.encode_status(wire.Status(wire.GatewayState.ONLINE, "clinic-e2e", now, "gw 1.0", now,
                                                 backlog=backlog or {},
                                                 devices=[wire.DeviceStatus("ox-1", "masimo", "tty", "ok", now)]))
        self.client.publish(wire.status_topic(self.gateway_id), payload, qos=1, retain=True).wait_for_publish(5)

    def reading(self, value: float, metric: str = SPO2, unit: str = "%") -> None:
        self.seq += 1
        now = int(time.time() * 1000)
        record = wire.WireRecord(self.seq, "observation", metric, value, unit, now, now, PATIENT, "ox-1")
        batch = wire.Batch(self.gateway_id, "clinic-e2e", wire.Lane.VITALS, now, [record])
        self.client.publish(wire.data_topic(self.gateway_id), wire.encode_batch(batch), qos=1).wait_for_publish(5)


@pytest.fixture
def gateway(broker: Mosquitto) -> Iterator[Gateway]:
    gw = Gateway(broker)
    try:
        yield gw
    finally:
        gw.close()


def stored(hq: Hq, seq: int) -> bool:
    request = urllib.request.Request(f"{hq.url}/api/v1/observations?gateway_id=gw-e2e&limit=1",
                                     headers={"Authorization": f"Bearer {hq.token}"})
    with urllib.request.urlopen(request) as resp:
        rows = json.load(resp)["observations"]
    return bool(rows) and rows[0]["seq"] >= seq


def wait_stored(hq: Hq, seq: int) -> None:
    deadline = time.monotonic() + 10
    while not stored(hq, seq):
        assert time.monotonic() < deadline, f"HQ did not store seq {seq}"
        time.sleep(0.05)


def tile(page: Page, metric: str = SPO2) -> object:
    return page.locator(f'.tile[data-patient="{PATIENT}"][data-metric="{metric}"] .value')


def test_fleet_page_tiles_update_live(page: Page, hq: Hq, gateway: Gateway) -> None:
    gateway.status()
    gateway.reading(95)
    wait_stored(hq, 1)
    accounts.login(page, hq.url, "coordinator", next_path="/")
    expect(page.locator("body")).to_have_attribute("data-live", "subscribed")
    expect(page.locator("#safety-notice")).to_contain_text("bedside monitor remains the primary alarm system")
    expect(page.locator('.gateway[data-gateway="gw-e2e"] .badge')).to_have_text("online")
    expect(tile(page)).to_have_text("95")
    gateway.reading(88)
    expect(tile(page)).to_have_text("88")
    gateway.reading(72, metric="MDC_PULS_OXIM_PULS_RATE", unit="/min")  # a new metric appears as a new tile
    expect(tile(page, "MDC_PULS_OXIM_PULS_RATE")).to_have_text("72")
    assert page.evaluate("performance.getEntriesByType('navigation').length") == 1  # no reload happened


def test_fleet_page_shows_each_lanes_backlog_live(page: Page, hq: Hq, gateway: Gateway) -> None:
    gateway.status()
    accounts.login(page, hq.url, "coordinator", next_path="/")
    expect(page.locator("body")).to_have_attribute("data-live", "subscribed")
    lanes = page.locator('.gateway[data-gateway="gw-e2e"] .lanes li')
    expect(lanes).to_have_count(0)
    two_minutes_ago = int(time.time() * 1000) - 120_000
    gateway.status({wire.Lane.ALARM: wire.LaneBacklog(0, None),
                    wire.Lane.VITALS: wire.LaneBacklog(1200, two_minutes_ago),
                    wire.Lane.BACKLOG: wire.LaneBacklog(50_000, two_minutes_ago - 3_600_000)})
    expect(lanes).to_have_text(["vitals: 1,200 \u00b7 oldest 2 min", "backlog: 50,000 \u00b7 oldest 1 h 2 min"])
    gateway.status({wire.Lane.VITALS: wire.LaneBacklog(0, None)})
    expect(lanes).to_have_count(0)


def test_patient_page_tiles_and_trend_chart_update_live(page: Page, hq: Hq, gateway: Gateway) -> None:
    for value in (97, 96):
        gateway.reading(value)
    wait_stored(hq, 2)
    lookup = quote(f"/patients/lookup?clinic_id=clinic-e2e&mrn={PATIENT}", safe="/")
    accounts.login(page, hq.url, "coordinator", next_path=lookup)
    expect(page.locator("body")).to_have_attribute("data-live", "subscribed")
    chart = page.locator(f'svg.chart[data-metric="{SPO2}"]')
    expect(chart).to_have_attribute("data-points", "2")
    expect(tile(page)).to_have_text("96")
    gateway.reading(91)
    expect(tile(page)).to_have_text("91")
    expect(chart).to_have_attribute("data-points", "3")
    assert chart.locator("polyline").count() == 1


def test_the_console_reconnects_when_hq_comes_back(page: Page, hq: Hq, gateway: Gateway) -> None:
    gateway.status()
    gateway.reading(95)
    wait_stored(hq, 1)
    accounts.login(page, hq.url, "coordinator", next_path="/")
    body = page.locator("body")
    expect(body).to_have_attribute("data-live", "subscribed")
    hq.stop()
    expect(body).to_have_attribute("data-live", "reconnecting", timeout=10_000)
    expect(page.locator("#live-state")).to_have_text("reconnecting")
    hq.start()
    # Retries back off to at most 10 s (plus jitter): the page is live again well within 30 s, by itself.
    expect(body).to_have_attribute("data-live", "subscribed", timeout=30_000)
    expect(page.locator("#live-state")).to_have_text("live")
    gateway.reading(77)
    expect(tile(page)).to_have_text("77")
    assert page.evaluate("performance.getEntriesByType('navigation').length") == 1  # no reload happened
