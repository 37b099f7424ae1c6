"""The downlink's publisher stops when HQ cancels it even if the publish in flight fails at that very moment (the
race that, with asyncio.wait_for on Python 3.11, swallowed the cancellation and left HQ's shutdown waiting)."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from gateway.mqttlink import NotConnected
from hq import db, downlink
from hq.models import clinics, gateways


class LinkLosingItsConnection:
    """What `Downlink` uses of an MqttLink, with the connection lost at a moment the test chooses: a real link
    cannot be made to fail a publish in the same loop iteration as a cancellation."""

    is_connected = True

    def __init__(self) -> None:
        self.publishing: asyncio.Future[asyncio.Future[None]] = asyncio.get_running_loop().create_future()

    async def publish(self, topic: str, payload: bytes, *, qos: int = 1, timeout_s: float = 30.0,
                      **_: Any) -> None:
        puback: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.publishing.set_result(puback)
        async with asyncio.timeout(timeout_s):
            await puback


async def test_a_cancel_that_meets_a_failed_publish_stops_the_publisher(tmp_path: Path) -> None:
    engine = db.create_engine_for(f"sqlite:///{tmp_path / 'hq.db'}")
    db.upgrade_schema(engine)
    with engine.begin() as conn:
        conn.execute(clinics.insert().values(id="clinic-a", name="Clinic A"))
        conn.execute(gateways.insert().values(id="gw-1", clinic_id="clinic-a", state="online", first_seen_ms=1))
        downlink.send(conn, "gw-1", "checkin_result", {"patient_id": 1})
    link = LinkLosingItsConnection()
    publisher = downlink.Downlink(engine, link, poll_s=0.05)  # type: ignore[arg-type]
    task = asyncio.create_task(publisher.run())
    publisher.wake()
    puback = await asyncio.wait_for(link.publishing, 5)
    puback.set_exception(NotConnected("connection lost before the broker acknowledged"))
    task.cancel()  # in the same iteration: HQ stopping while its link goes down
    done, _ = await asyncio.wait({task}, timeout=3)
    assert done == {task} and task.cancelled()
    engine.dispose()


