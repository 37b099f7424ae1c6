"""A participant calls through HQ: HQ relays the offer to the clinic's gateway over MQTT and the answer back,
the participant decodes the clinic's camera, the gateway's quality reports reach HQ's database and the
participant's page, and a dropped signalling socket resumes without re-joining."""

from __future__ import annotations

from pathlib import Path

import sqlalchemy as sa

from hq.models import call_participants, call_quality_samples
from tests.integration.media.conftest import call_stack, wait_for
from tests.support.call_client import CallClient, CallRefused, HqSession
from tests.support.mosquitto import Mosquitto


async def test_a_participant_sees_the_clinic_camera_through_hq_signalling(broker: Mosquitto, tmp_path: Path,
                                                                          clip: Path) -> None:
    async with call_stack(broker, tmp_path, clip) as stack:
        session = HqSession(stack.hq.url, stack.consultation, name="Dr Wang")
        joined = await session.connect()
        assert joined["slots"][:3] == ["camera", "camera", "clinic-audio"] and not joined["resumed"]
        client = CallClient(session.slots, ice_servers=session.ice_servers())
        try:
            await client.join(session.offer)
            await client.wait_frames("camera-0", 20)
            await client.wait_frames("clinic-audio", 25)  # the camera's microphone, as no clinic screen sends one
            quality = await wait_for(lambda: session.of_type("quality"), what="quality pushed to the page")
            peers = quality[-1]["peers"]  # type: ignore[index]
            assert peers[0]["name"] == "Dr Wang" and peers[0]["state"] == "connected"
            streams = {s["stream"]: s for s in peers[0]["streams"]}
            await wait_for(lambda: any(q["peers"][0]["streams"][0].get("fps") for q in session.of_type("quality")),
                           what="a frame rate reported")
            assert streams["camera-0"]["source"] == "Room camera" and streams["camera-0"]["tier"] == "main"
            state = await wait_for(lambda: session.of_type("state"), what="slot labels")
            labels = {s["slot"]: s["label"] for s in state[-1]["state"]["slots"]}  # type: ignore[index]
            assert labels["camera-0"] == "Room camera"

            def stored() -> int:
                with stack.engine.connect() as conn:
                    return int(conn.execute(sa.select(sa.func.count()).select_from(call_quality_samples)).scalar_one())
            await wait_for(lambda: stored() >= 5, what="quality samples stored")
            summary = await stack.hq.get_json(f"/api/v1/consultations/{stack.consultation}/call")
            assert [p["name"] for p in summary["participants"]] == ["Dr Wang"] and summary["quality"]

            # The browser's socket drops (its network changed): it comes back as the same participant.
            first_peer = joined["peer"]
            await session.disconnect()
            again = await session.connect(resume=True)
            assert again["resumed"] and again["peer"] == first_peer
            await client.wait_frames("camera-0", 10)  # media never stopped: it does not go through HQ
            with stack.engine.connect() as conn:
                assert conn.execute(sa.select(sa.func.count()).select_from(call_participants)).scalar_one() == 1
        finally:
            await client.close()
            await session.disconnect()


async def test_an_unknown_consultation_or_a_full_call_is_refused(broker: Mosquitto, tmp_path: Path,
                                                               clip: Path) -> None:
    async with call_stack(broker, tmp_path, clip, media="max_remote_parties = 1") as stack:
        async with stack.hq.http.ws_connect(stack.hq.url.replace("http", "ws") + "/consultations/C-NOPE/call/ws") as ws:
            assert (await ws.receive_json()) == {"type": "error", "reason": "there is no consultation C-NOPE"}
        first, second = HqSession(stack.hq.url, stack.consultation), HqSession(stack.hq.url, stack.consultation)
        await first.connect()
        await second.connect()
        a = CallClient(first.slots, ice_servers=first.ice_servers())
        b = CallClient(second.slots, ice_servers=second.ice_servers())
        try:
            await a.join(first.offer)
            try:
                await b.join(second.offer)
            except CallRefused as exc:
                assert "1 remote participants" in str(exc)
            else:
                raise AssertionError("a second participant joined a call limited to one")
        finally:
            for c in (a, b):
                await c.close()
            for s in (first, second):
                await s.disconnect()
