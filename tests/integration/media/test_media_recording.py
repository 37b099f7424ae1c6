"""Recording a call with the clinic's consent: the gateway writes an MP4 (the camera's H.264 as it came, the
voices in AAC), announces it in the outbox's bulk lane, uploads it to HQ when the call is over; HQ checks its
SHA-256, lists it on the consultation, serves it (with ranges) and audits every access."""

from __future__ import annotations

import hashlib
from pathlib import Path

import av
import sqlalchemy as sa

from hq import records
from hq.models import audit_log, consultations, observations, recordings
from hq.patient_timeline import snapshot
from tests.integration.media.conftest import call_stack, wait_for
from tests.support.call_client import CallClient, HqSession
from tests.support.mosquitto import Mosquitto


async def test_a_consented_call_is_recorded_uploaded_and_served(broker: Mosquitto, tmp_path: Path,
                                                                clip: Path) -> None:
    hq_dir = tmp_path / "hq-recordings"
    async with call_stack(broker, tmp_path, clip, media="call_idle_s = 1\nupload_chunk_bytes = 65536",
                          hq_extra=f'[recordings]\ndir = "{hq_dir}"\n') as stack:
        token = stack.token("coord")
        session = HqSession(stack.hq.url, stack.consultation, token)
        await session.connect()
        client = CallClient(session.slots, ice_servers=session.ice_servers())
        try:
            await client.join(session.offer)
            await client.wait_frames("camera-0", 5)
            async with stack.hq.http.post(f"{stack.gateway_http}/api/v1/calls/{stack.consultation}/consent",
                                          json={"consent": True}) as resp:
                assert resp.status == 200
            await wait_for(lambda: any(m["state"]["recording"] for m in session.of_type("state")),
                           what="the participant told the call is recorded")
            await client.wait_frames("camera-0", 60)  # about 4 s of call
            await session.leave()
        finally:
            await client.close()
            await session.disconnect()

        def row() -> dict[str, object] | None:
            with stack.engine.connect() as conn:
                found = conn.execute(sa.select(recordings)).mappings().first()
            return None if found is None else dict(found)
        done = await wait_for(lambda: (r := row()) is not None and r["state"] == "complete" and r, timeout_s=60,
                              what="the recording complete at HQ")
        assert isinstance(done, dict)
        stored = hq_dir / str(done["storage_path"])
        assert hashlib.sha256(stored.read_bytes()).hexdigest() == done["sha256"]
        assert done["size_bytes"] == stored.stat().st_size and done["consultation_public_id"] == stack.consultation
        with av.open(str(stored)) as mp4:
            kinds = {s.type: s.codec_context.name for s in mp4.streams}
            assert kinds == {"video": "h264", "audio": "aac"}
            assert 3.0 < mp4.duration / 1e6 < 15.0
            frames = sum(1 for _ in mp4.decode(video=0))
        assert frames >= 45  # the camera's frames, not re-encoded: they decode
        # Deleted at the gateway once HQ confirmed it.
        await wait_for(lambda: not list((tmp_path / "gw" / "recordings").glob("*")), what="the gateway's copy gone")

        with stack.engine.connect() as conn:
            announced = conn.execute(sa.select(observations.c.metric, observations.c.extra).where(
                observations.c.metric == "RECORDING")).all()
        assert announced and announced[0].extra["id"] == done["recording_id"]  # via the outbox's bulk lane

        listed = await stack.hq.get_json(f"/api/v1/consultations/{stack.consultation}/recordings")
        assert [r["state"] for r in listed["recordings"]] == ["complete"]
        url = stack.hq.url + listed["recordings"][0]["url"]
        async with stack.hq.http.get(url, headers={"Range": "bytes=0-99"}) as resp:
            assert resp.status == 206 and len(await resp.read()) == 100
        with stack.engine.connect() as conn:
            views = conn.execute(sa.select(audit_log.c.actor, audit_log.c.target_id).where(
                audit_log.c.action == "recording.view")).all()
        assert [(v.actor, v.target_id) for v in views] == [("user:admin", done["recording_id"])]
        page = await stack.hq.http.get(stack.hq.url + f"/consultations/{stack.consultation}/call")
        assert done["recording_id"] in await page.text()

        # On the patient's timeline too.
        with stack.engine.begin() as conn:
            patient = records.register_patient(conn, "clinic-call", "MRN-1", name="Test Patient")
            conn.execute(consultations.update().where(consultations.c.public_id == stack.consultation)
                         .values(patient_id=patient))
        with snapshot(stack.engine) as conn:
            timeline = records.timeline(conn, patient, since_ms=0, until_ms=2**42).to_json()
        entries = [e for e in timeline["entries"] if e["type"] == "recording"]
        assert [e["recording_id"] for e in entries] == [done["recording_id"]] and entries[0]["url"]
        assert timeline["recordings"] == "1 on the timeline"
