"""HQ-managed settings round trip as real processes: a coordinator's new version goes over the downlink, the
gateway checks it with its TOML rules, keeps it across a restart, puts it into effect and answers; the console
and the API show pending, applied and rejected."""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest

from gateway.managed_settings import ManagedSettings
from hq import db, gateway_settings
from tests.support.ports import eventually
from tests.support.stack import GatewaySpec, SimulatedDevice, Stack

GW = "gw-cfg"
DEVICE = "oxi-cfg"


@pytest.fixture
def stack() -> Iterator[Stack]:
    with Stack() as s:
        s.start_broker()
        s.start_hq()
        s.start_gateway(GatewaySpec(GW, "clinic-c", [SimulatedDevice(DEVICE, "masimo", "P-0100", rate=2, seed=9)],
                                    heartbeat_s=5))
        yield s


def put_settings(stack: Stack, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    request = urllib.request.Request(f"{stack.hq_url}/api/v1/gateways/{GW}/settings", data=json.dumps(body).encode(),
                                     method="PUT", headers={"Content-Type": "application/json",
                                                            "Authorization": f"Bearer {stack.admin_token}"})
    try:
        with urllib.request.urlopen(request, timeout=10) as resp:
            return resp.status, dict(json.load(resp))
    except urllib.error.HTTPError as exc:
        return exc.code, dict(json.load(exc))


def versions(stack: Stack) -> list[dict[str, Any]]:
    return list(stack.hq_get(f"/api/v1/gateways/{GW}/settings")["versions"])


def at_hq(stack: Stack) -> dict[str, Any]:
    gateways: list[dict[str, Any]] = stack.hq_get("/api/v1/gateways")["gateways"]
    return next(g for g in gateways if g["gateway_id"] == GW)


def device_state(stack: Stack) -> str | None:
    return next((d["state"] for d in at_hq(stack)["devices"] if d["device_id"] == DEVICE), None)


def test_a_settings_change_reaches_the_gateway_is_applied_kept_and_acknowledged(stack: Stack) -> None:
    eventually(lambda: device_state(stack) == "ok", what="the gateway and its oximeter reported at HQ")
    assert at_hq(stack)["config_version"] == 0 and at_hq(stack)["config"] is None
    status, answer = put_settings(stack, {"status": {"heartbeat_s": 1}, "outbox": {"live_window_s": 30},
                                          "serial": {DEVICE: {"silent_after_s": 3}}})
    assert (status, answer["version"], answer["state"]) == (202, 1, "pending"), answer
    eventually(lambda: versions(stack)[0]["state"] == "applied", timeout_s=20, what="v1 applied")
    assert eventually(lambda: at_hq(stack)["config_version"] == 1, what="the gateway reports v1")
    config = at_hq(stack)["config"]
    assert (config["version"], config["state"], config["applied_version"]) == (1, "applied", 1)
    local = stack.gateway_status(GW)["config"]
    assert local["version"] == 1 and local["settings"]["serial"] == {DEVICE: {"silent_after_s": 3.0}}
    # In effect at once: the oximeter stops, and it is silent after 3 s instead of the TOML's 15.
    stack.stop_process(f"sim-{GW}-{DEVICE}")
    stopped = time.monotonic()
    eventually(lambda: device_state(stack) == "silent", timeout_s=12, what="the device reported silent")
    assert time.monotonic() - stopped < 10

    # HQ refuses what breaks a rule, before sending anything.
    for body, needle in (({"outbox": {"live_window_s": 2}}, "live_window_s 2 must be at least 5"),
                         ({"serial": {"ecg-9": {"silent_after_s": 5}}}, "no serial device 'ecg-9'"),
                         ({"mqtt": {"host": "elsewhere"}}, "mqtt cannot be changed from HQ")):
        status, answer = put_settings(stack, body)
        assert status == 400 and answer["field"] == "settings" and needle in answer["error"], answer
    # The gateway is the authority: a version HQ let through (an older HQ, a rule only the gateway knows) is
    # rejected with its reason, and the gateway keeps running v1.
    engine = db.create_engine_for(stack.db_url)
    try:
        with engine.begin() as conn:
            gateway_settings.new_version(conn, GW, ManagedSettings(live_window_s=2.0), actor="test", now_ms=0)
    finally:
        engine.dispose()
    rejected = eventually(lambda: (v := versions(stack)[0])["state"] == "rejected" and v, timeout_s=20,
                          what="v2 rejected")
    assert rejected["version"] == 2 and "live_window_s 2 must be at least 5" in rejected["reason"]
    assert at_hq(stack)["config_version"] == 1 and stack.gateway_status(GW)["config"]["version"] == 1
    page = stack.hq_page(f"/gateways/{GW}")
    assert 'data-state="rejected"' in page and "live_window_s 2 must be at least 5" in page
    assert 'data-state="applied"' in page  # v1 in the history
    fleet = stack.hq_page("/")
    card = fleet[fleet.index(f'data-gateway="{GW}"'):]
    assert "v2 rejected: " in card[:4000] and "running v1" in card[:4000]

    # Durable: after a restart the gateway runs v1 again, from its data directory, and says so.
    stack.stop_process(f"gw-{GW}")
    stack.restart_gateway(GW)
    assert stack.gateway_status(GW)["config"]["version"] == 1
    assert "HQ-managed settings v1 in effect" in stack.log(f"gw-{GW}")
    eventually(lambda: at_hq(stack)["status"] == "online" and at_hq(stack)["config_version"] == 1,
               what="HQ sees v1 after the restart")
