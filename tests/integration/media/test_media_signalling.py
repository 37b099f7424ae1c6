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
        session = HqSession(stack.hq.url, stack.consultation, stack.token("wang", display_name="Dr Wang"))
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
        token = stack.token("coordinator-1")
        ws_url = stack.hq.url.replace("http", "ws") + "/consultations/C-NOPE/call/ws"
        async with stack.hq.http.ws_connect(ws_url, headers={"Authorization": f"Bearer {token}"}) as ws:
            assert (await ws.receive_json()) == {"type": "error", "reason": "there is no consultation C-NOPE"}
        first, second = HqSession(stack.hq.url, stack.consultation, token), HqSession(
            stack.hq.url, stack.consultation, stack.token("coordinator-2"))
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


async def test_only_coordinators_admins_and_the_consultations_experts_may_join(broker: Mosquitto, tmp_path: Path,
                                                                               clip: Path) -> None:
    import time

    import aiohttp

    from hq.models import audit_log, consultations, departments, experts, users

    async with call_stack(broker, tmp_path, clip) as stack:
        tokens = {name: stack.token(name, role) for name, role in (
            ("expert-yes", "expert"), ("expert-no", "expert"), ("nurse", "clinic_staff"), ("coord", "coordinator"))}
        now = int(time.time() * 1000)
        with stack.engine.begin() as conn:
            department = conn.execute(sa.select(departments.c.id).limit(1)).scalar() or conn.execute(
                departments.insert().values(code="cardiology", name="Cardiology")).inserted_primary_key[0]
            ids = {}
            for name in ("expert-yes", "expert-no"):
                user = conn.execute(sa.select(users.c.id).where(users.c.username == name)).scalar_one()
                ids[name] = conn.execute(experts.insert().values(
                    user_id=user, name=name, department_id=department, languages=["en"], created_ms=now,
                    profile_updated_ms=now)).inserted_primary_key[0]
            conn.execute(consultations.update().where(consultations.c.public_id == stack.consultation)
                         .values(expert_id=ids["expert-yes"]))
        url = stack.hq.url.replace("http", "ws") + f"/consultations/{stack.consultation}/call/ws"
        async with aiohttp.ClientSession() as http:  # not the fixture's, which sends an admin's token
            # Not logged in: sent to the login page (200 there, not 101), as for every console page.
            for name, expected in (("expert-no", 403), ("nurse", 403), (None, 200)):
                headers = {"Authorization": f"Bearer {tokens[name]}"} if name else {}
                try:
                    async with http.ws_connect(url, headers=headers):
                        raise AssertionError(f"{name} opened the call socket")
                except aiohttp.WSServerHandshakeError as exc:
                    assert exc.status == expected, name
        for name in ("expert-yes", "coord"):
            session = HqSession(stack.hq.url, stack.consultation, tokens[name])
            assert (await session.connect())["peer"]
            await session.leave()
            await session.disconnect()
        with stack.engine.connect() as conn:
            joins = conn.execute(sa.select(audit_log.c.actor).where(audit_log.c.action == "call.join",
                                                                   audit_log.c.target_id == stack.consultation)
                                 ).scalars().all()
        assert sorted(joins) == ["user:coord", "user:expert-yes"]
