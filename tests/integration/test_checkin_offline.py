"""A patient checked in at a clinic whose link to HQ is down, over real processes (Mosquitto, HQ, a gateway
with a simulated monitor on a pty, the WAN a proxy the test cuts): the check-in and the monitor link work
offline, the monitor's readings carry the patient's record number meanwhile, and when the link returns HQ
reconciles the check-in with its records (the record the monitor's earlier readings made is merged in) and
the gateway's screen shows which HQ patient it became."""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest

from tests.support.netproxy import CutMode
from tests.support.ports import eventually
from tests.support.stack import GatewaySpec, SimulatedDevice, Stack

GW, CLINIC, MONITOR = "gw-desk", "clinic-desk", "monitor-1"
BED_ID, MRN = "BED-7", "MRN-0042"


@pytest.fixture
def stack() -> Iterator[Stack]:
    with Stack() as s:
        s.start_broker()
        s.start_hq()
        yield s


def lookup(stack: Stack, mrn: str) -> int | None:
    try:
        found = stack.hq_get("/api/v1/patients/lookup?" + urllib.parse.urlencode({"clinic_id": CLINIC, "mrn": mrn}))
    except urllib.error.HTTPError as exc:
        if exc.code == 404:
            return None
        raise
    return int(found["patient_id"])  # type: ignore[call-overload]


def checkins(stack: Stack) -> dict[str, Any]:
    with urllib.request.urlopen(stack.gateway_url(GW) + "/api/v1/checkins", timeout=5) as resp:
        return dict(json.load(resp))


def readings(stack: Stack, mrn: str) -> list[dict[str, Any]]:
    query = urllib.parse.urlencode({"clinic_id": CLINIC, "patient_id": mrn, "kind": "observation", "limit": 10000})
    return list(stack.hq_get("/api/v1/observations?" + query)["observations"])  # type: ignore[call-overload]


@pytest.mark.timeout(240)
def test_an_offline_checkin_is_reconciled_at_hq_when_the_link_returns(stack: Stack) -> None:
    proxy = stack.broker_proxy()
    spec = GatewaySpec(GW, CLINIC, [SimulatedDevice(MONITOR, "hl7", BED_ID, rate=2, seed=5)], heartbeat_s=1,
                       keepalive_s=5, broker_via=proxy)
    stack.start_gateway(spec)
    # The monitor's readings (under its own patient id) reach HQ, which makes a record of that id.
    before = eventually(lambda: lookup(stack, BED_ID), 60, "HQ's record of the monitor's patient id")

    proxy.cut(CutMode.BLACKHOLE)
    cut_at_ms = int(time.time() * 1000)
    form = urllib.parse.urlencode({"mrn": MRN, "name": "王芳", "alt_name": "Wang Fang", "sex": "female",
                                   "birth_date": "1961-05-04", "national_id": "310104196105040028",
                                   "reason": "chest pain", "device_id": MONITOR}).encode()
    request = urllib.request.Request(stack.gateway_url(GW) + "/checkin", data=form, method="POST")
    with urllib.request.urlopen(request, timeout=10) as resp:  # follows the redirect to the check-in page
        page = resp.read().decode()
    assert "queued: will be sent to HQ when the link returns" in page
    desk = checkins(stack)
    assert desk["links"] == {MONITOR: MRN}
    assert [(c["mrn"], c["state"]) for c in desk["checkins"]] == [(MRN, "queued")]
    time.sleep(4)  # the monitor goes on; its readings now belong to the checked-in patient
    assert lookup(stack, MRN) is None, "the check-in crossed a cut link"
    assert checkins(stack)["checkins"][0]["state"] == "queued"

    proxy.restore()
    pid = eventually(lambda: lookup(stack, MRN), 60, "the check-in reconciled at HQ")
    patient: dict[str, Any] = stack.hq_get(f"/api/v1/patients/{pid}")
    assert (patient["name"], patient["alt_name"], patient["national_id"], patient["origin"]) == (
        "王芳", "Wang Fang", "310104196105040028", "checkin")
    assert sorted(i["mrn"] for i in patient["identifiers"]) == [BED_ID, MRN]
    assert lookup(stack, BED_ID) == pid  # the record the earlier readings made was merged in
    assert stack.hq_get(f"/api/v1/patients/{before}")["patient_id"] == pid

    # Readings taken while offline carry the record number and are at HQ, on the patient's timeline.
    offline = eventually(lambda: [r for r in readings(stack, MRN) if r["time"] >= _iso(cut_at_ms)], 60,
                         "the readings taken offline")
    assert offline and {r["device_id"] for r in offline} == {MONITOR}

    def summed() -> int:
        doc: dict[str, Any] = stack.hq_get(f"/api/v1/patients/{pid}/timeline?days=2")
        return sum(m["count"] for d in doc["timeline"]["vitals_by_day"] for m in d["metrics"])

    eventually(lambda: summed() >= len(readings(stack, BED_ID)) + len(offline), 60, "readings on the timeline")
    visit = [e for e in stack.hq_get(f"/api/v1/patients/{pid}/timeline")["timeline"]["entries"]  # type: ignore[index]
             if e["type"] == "visit"]
    assert [(v["reason"], v["gateway_id"]) for v in visit] == [("chest pain", GW)]

    # HQ's answer reached the gateway: the screen says which patient the check-in became.
    done = eventually(lambda: [c for c in checkins(stack)["checkins"] if c["state"] == "reconciled"], 60,
                      "the checkin_result notice at the gateway")
    assert (done[0]["hq_patient_id"], done[0]["hq_outcome"]) == (pid, "created")
    with urllib.request.urlopen(stack.gateway_url(GW) + "/checkin", timeout=5) as resp:
        assert f"HQ record {pid}" in resp.read().decode()


def _iso(ms: int) -> str:
    from hq.clock import iso_from_ms

    text = iso_from_ms(ms)
    assert text is not None
    return text
