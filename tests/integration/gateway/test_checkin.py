"""Check-in on the gateway against a real outbox and the local screen over HTTP: a check-in is one outbox event
(consultation lane) committed with its row and the device link; a linked monitor's readings carry the
patient's record number; links survive a restart; HQ's result notice marks the check-in reconciled."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import aiohttp
import pytest

from devices.masimo import encode_line
from gateway import tomlconfig, wire
from gateway.app import build
from gateway.capture import DeviceHealth, DeviceSession, make_decoder
from gateway.config import GatewayConfig, Protocol
from gateway.local_ui.checkin import CheckinDesk
from gateway.outbox import Outbox
from tests.support.ports import free_port

UTC_ZONE = ZoneInfo("UTC")


@pytest.fixture
async def outbox(tmp_path: Path) -> AsyncIterator[Outbox]:
    box = Outbox(tmp_path / "outbox.db", "gw-1")
    await box.open()
    yield box
    await box.close()


def oximeter() -> tuple[dict[str, DeviceHealth], DeviceHealth]:
    health = DeviceHealth("oxi-1", "masimo", "/dev/ttyUSB0", state="ok")
    return {"oxi-1": health}, health


async def readings(outbox: Outbox, lane: wire.Lane) -> list[wire.WireRecord]:
    return await outbox.read_lane(lane, 0, 1000)


async def test_a_checkin_is_queued_in_the_outbox_and_links_the_monitor(outbox: Outbox, tmp_path: Path) -> None:
    devices, health = oximeter()
    desk = CheckinDesk(outbox, devices)
    await desk.open()
    session = DeviceSession(health, make_decoder(Protocol.MASIMO, "oxi-1", UTC_ZONE), outbox.append,
                            patient_id="BED-2", linked_patient=desk.linked_patient)
    now = datetime.now(UTC)
    await session.received(encode_line(now, UTC_ZONE, spo2=97, bpm=70, pi=2.0))
    assert {r.patient_id for r in await readings(outbox, wire.Lane.VITALS)} == {"BED-2"}
    assert health.patient_id == "BED-2"

    state = await desk.check_in({"mrn": "A-0012", "name": "王芳", "sex": "female", "device_id": "oxi-1",
                                 "reason": "short of breath"})
    assert state.state == "queued" and "when the link returns" in state.summary()
    events = await readings(outbox, wire.Lane.CONSULT)
    assert [(e.kind, e.metric, e.patient_id) for e in events] == [("event", "PATIENT_CHECKIN", "A-0012")]
    body = events[0].extra
    assert body is not None and body["checkin_id"] == state.checkin_id and body["name"] == "王芳"
    assert body["devices"] == [{"device_id": "oxi-1", "reported_patient_id": "BED-2"}]
    assert desk.linked_patient("oxi-1") == "A-0012"

    await session.received(encode_line(now, UTC_ZONE, spo2=93, bpm=75, pi=2.0))
    vitals = await readings(outbox, wire.Lane.VITALS)
    assert [r.patient_id for r in vitals if r.value == 93.0] == ["A-0012"]  # stamped with the linked patient
    assert health.patient_id == "BED-2"  # what the device itself would send

    # HQ confirmed the event: "received"; its notice names the patient: "reconciled".
    await outbox.remove_acked([(wire.Lane.CONSULT, events[0].seq, events[0].seq)])
    assert (await desk.recent())[0].state == "received"
    handled = await desk.on_result(wire.Notice(1, wire.CHECKIN_RESULT_NOTICE, {
        "checkin_id": state.checkin_id, "patient_id": 42, "outcome": "matched", "name": "王芳"}, 0))
    assert handled.outcome == "applied"
    done = (await desk.recent())[0]
    assert (done.state, done.hq_patient_id) == ("reconciled", 42) and "HQ record 42" in done.summary()
    unknown = await desk.on_result(wire.Notice(2, wire.CHECKIN_RESULT_NOTICE, {"checkin_id": "nope",
                                                                                "patient_id": 1}, 0))
    assert unknown.outcome == "rejected"

    # a restart keeps the link; unlinking ends it
    again = CheckinDesk(outbox, devices)
    await again.open()
    assert again.linked_patient("oxi-1") == "A-0012"
    assert await again.unlink("oxi-1") and again.linked_patient("oxi-1") is None


async def test_the_local_screen_form_and_its_json_twin(tmp_path: Path) -> None:
    port = free_port()
    config = tomlconfig.loads(f'[gateway]\nid = "gw-1"\nclinic_id = "clinic-a"\ndata_dir = "{tmp_path}"\n'
                              f"[http]\nport = {port}\n", GatewayConfig, "gateway.toml")
    gw = build(config)
    gw.devices["oxi-1"] = DeviceHealth("oxi-1", "masimo", "/dev/ttyUSB0", state="ok", patient_id="BED-2")
    await gw.outbox.open()
    assert gw.checkin is not None and gw.local_api is not None
    await gw.checkin.open()
    await gw.local_api.start()
    base = f"http://127.0.0.1:{port}"
    try:
        async with aiohttp.ClientSession() as http:
            async with http.get(f"{base}/checkin") as resp:
                page = await resp.text()
                assert resp.status == 200 and 'href="/checkin"' in page and "HQ link: offline" in page
            async with http.post(f"{base}/checkin", data={"mrn": "A-7", "name": "", "device_id": "oxi-1"}) as resp:
                page = await resp.text()
                assert resp.status == 400 and "name: is empty" in page and 'value="A-7"' in page
            async with http.post(f"{base}/checkin", data={"mrn": "A-7", "name": "Li Na", "device_id": "oxi-1"},
                                 allow_redirects=False) as resp:
                assert resp.status == 303 and resp.headers["Location"].startswith("/checkin?done=")
            async with http.get(f"{base}{resp.headers['Location']}") as resp:
                page = await resp.text()
                assert "Li Na" in page and "queued: will be sent to HQ when the link returns" in page
                assert '<td class="linked">A-7</td>' in page
            async with http.post(f"{base}/checkin", data={"mrn": "A-8", "name": "X"},
                                 headers={"Origin": "http://evil.example"}) as resp:
                assert resp.status == 403
            async with http.post(f"{base}/api/v1/checkins", json={"mrn": "A-9", "name": "Zhao", "sex": "q"}) as resp:
                assert resp.status == 400 and (await resp.json())["field"] == "sex"
            async with http.post(f"{base}/api/v1/checkins", json={"mrn": "A-9", "name": "Zhao"}) as resp:
                created = await resp.json()
                assert resp.status == 201 and created["state"] == "queued"
            async with http.get(f"{base}/api/v1/checkins") as resp:
                listed = await resp.json()
            assert [c["mrn"] for c in listed["checkins"]] == ["A-9", "A-7"] and listed["links"] == {"oxi-1": "A-7"}
            async with http.post(f"{base}/checkin/unlink", data={"device_id": "oxi-1"}) as resp:
                assert resp.status == 200
            assert gw.checkin.links() == {}
        events = await gw.outbox.read_lane(wire.Lane.CONSULT, 0, 100)
        assert [json.dumps(e.extra["mrn"]) for e in events if e.extra] == ['"A-7"', '"A-9"']
    finally:
        await gw.local_api.stop()
        await gw.outbox.close()
