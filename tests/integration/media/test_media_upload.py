"""Recording uploads over MQTT to a real HQ: an interrupted upload resumes where HQ's copy ends (after a pause
and after a restart of the gateway's uploader), and bytes that arrive corrupted are caught by the SHA-256 and
sent again."""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import AsyncIterator
from pathlib import Path

import sqlalchemy as sa

from gateway.media.recordings import RecordingFiles
from gateway.media.upload import RecordingUploader
from gateway.mqttlink import LinkSettings, MqttLink
from hq.appkeys import ENGINE
from hq.models import recordings
from tests.integration.hq.conftest import RunningHq, hq_config, running_hq
from tests.integration.media.conftest import wait_for
from tests.support.mosquitto import Mosquitto

CHUNK = 64 * 1024
SIZE = 40 * CHUNK + 1234


class Gate:
    """Lets an upload send a given number of chunks, then holds it (as a call starting would)."""

    def __init__(self) -> None:
        self.allowed: int | None = None
        self.asked = 0

    def __call__(self) -> bool:
        self.asked += 1
        return self.allowed is None or self.asked <= self.allowed


@contextlib.asynccontextmanager
async def hq_and_uploader(broker: Mosquitto, tmp_path: Path, gate: Gate) -> AsyncIterator[
        tuple[RunningHq, RecordingFiles, MqttLink, Path]]:
    hq_dir = tmp_path / "hq"
    async with running_hq(hq_config(broker, f"sqlite:///{tmp_path / 'hq.db'}",
                                    f'[recordings]\ndir = "{hq_dir}"\n')) as hq:
        files = RecordingFiles(tmp_path / "gw", 10**9)
        files.begin("gw-up.1.aa", "C-UP-1", "clinic-up", 1_000)
        files.media("gw-up.1.aa").write_bytes(os.urandom(SIZE))
        files.finish("gw-up.1.aa", 9_000)
        link = MqttLink(LinkSettings(broker.host, broker.port, "gw-up"))
        task = asyncio.create_task(link.run())
        try:
            yield hq, files, link, hq_dir
        finally:
            await link.close()
            task.cancel()


async def run_uploader(files: RecordingFiles, link: MqttLink, gate: Gate) -> tuple[RecordingUploader,
                                                                                    asyncio.Task[None]]:
    uploader = RecordingUploader(files, link, "gw-up", chunk_bytes=CHUNK, kbps=0, may_send=gate)
    link.set_handlers(subscriptions=uploader.subscriptions, on_message=uploader.on_message)
    task = asyncio.create_task(uploader.run())
    await link.wait_connected(10)
    return uploader, task


def received(hq: RunningHq) -> tuple[int, str]:
    with hq.app[ENGINE].connect() as conn:
        row = conn.execute(sa.select(recordings.c.received_bytes, recordings.c.state)).first()
    return (0, "none") if row is None else (int(row.received_bytes), str(row.state))


async def test_an_interrupted_upload_resumes_where_hq_stopped(broker: Mosquitto, tmp_path: Path) -> None:
    gate = Gate()
    gate.allowed = 12
    async with hq_and_uploader(broker, tmp_path, gate) as (hq, files, link, _hq_dir):
        first, task = await run_uploader(files, link, gate)
        await wait_for(lambda: received(hq)[0] >= 10 * CHUNK, what="part of the upload at HQ")
        await asyncio.sleep(1)
        task.cancel()  # the gateway stops (or its uploader is held by a call) midway
        with contextlib.suppress(asyncio.CancelledError):
            await task
        partial, state = received(hq)
        assert state == "uploading" and 0 < partial < SIZE
        gate.allowed = None
        second, task = await run_uploader(files, link, gate)  # as after a restart: offers, HQ says where it is
        try:
            await wait_for(lambda: received(hq)[1] == "complete", what="the upload complete")
            await wait_for(lambda: not files.pending(), what="the gateway's copy deleted")
        finally:
            task.cancel()
        # The second run sent only what HQ lacked (give or take the chunks that were in flight).
        assert SIZE - partial <= second.stats.bytes_sent <= SIZE - partial + 4 * CHUNK
        assert first.stats.bytes_sent + second.stats.bytes_sent < 1.5 * SIZE


async def test_bytes_corrupted_on_the_way_are_caught_and_sent_again(broker: Mosquitto, tmp_path: Path) -> None:
    gate = Gate()
    gate.allowed = 20
    async with hq_and_uploader(broker, tmp_path, gate) as (hq, files, link, hq_dir):
        uploader, task = await run_uploader(files, link, gate)
        try:
            await wait_for(lambda: received(hq)[0] >= 15 * CHUNK, what="part of the upload at HQ")
            partial = next((hq_dir / "partial").glob("*.part"))
            data = bytearray(partial.read_bytes())
            data[1000] ^= 0xFF  # a flipped bit on disk or on the way
            partial.write_bytes(bytes(data))
            gate.allowed = None
            gate.asked = 0
            uploader.wake()
            await wait_for(lambda: received(hq)[1] == "complete", timeout_s=60, what="the upload complete")
        finally:
            task.cancel()
        assert uploader.stats.restarts == 1
        with hq.app[ENGINE].connect() as conn:
            path = conn.execute(sa.select(recordings.c.storage_path)).scalar_one()
        assert (hq_dir / path).stat().st_size == SIZE
