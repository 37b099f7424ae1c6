"""After a restore, HQ asks each gateway (retained, over the real broker) to replay from what it holds."""

from __future__ import annotations

import asyncio
import contextlib

from gateway import wire
from gateway.mqttlink import LinkSettings, Message, MqttLink
from hq import db, replay
from tests.integration.hq.conftest import FakeGateway, hq_config, running_hq
from tests.support.mosquitto import Mosquitto


async def replay_requests_seen(broker: Mosquitto, gateway_id: str, wait_s: float = 3.0) -> list[wire.Replay]:
    """Connect as the gateway would and collect the (retained) replay requests delivered."""
    seen: list[wire.Replay] = []

    def on_message(message: Message) -> None:
        if message.payload:
            seen.append(wire.decode_replay(message.payload))

    link = MqttLink(LinkSettings(broker.host, broker.port, f"{gateway_id}-replay-watch"),
                    subscriptions=[(wire.replay_topic(gateway_id), 1)], on_message=on_message)
    task = asyncio.create_task(link.run())
    try:
        await link.wait_connected(10)
        await asyncio.sleep(wait_s)
    finally:
        await link.close()
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
    return seen


async def test_restored_database_asks_each_gateway_to_replay_from_its_complete_watermark(
    broker: Mosquitto, db_url: str
) -> None:
    config = hq_config(broker, db_url)
    async with running_hq(config), FakeGateway(broker, "gw-1") as gw1, FakeGateway(broker, "gw-2") as gw2:
        first = gw1.batch(range(1, 11))
        await gw1.send(wire.Batch(first.gateway_id, first.clinic_id, first.lane, first.sent_ms, first.records, 1))
        await gw1.next_ack()
        second = gw1.batch(range(11, 21))
        # The gateway says: everything below 15 is confirmed (16-20 arrive later, out of order).
        await gw1.send(wire.Batch(second.gateway_id, second.clinic_id, second.lane, second.sent_ms,
                                  second.records, 15))
        await gw1.next_ack()
        await gw2.send(gw2.batch(range(1, 4)))  # an older gateway that never sends a floor
        await gw2.next_ack()
    assert await replay_requests_seen(broker, "gw-1", wait_s=0.5) == []

    engine = db.create_engine_for(config.database.url)
    due = await asyncio.to_thread(replay.mark_replay_due, engine)
    async with running_hq(config):
        # A watcher that subscribes while HQ publishes may get the request live and retained: the
        # gateway carries out each request id once.
        requests = {gw: set(await replay_requests_seen(broker, gw)) for gw in ("gw-1", "gw-2")}
        assert requests == {"gw-1": {wire.Replay(f"restore-{due}", 15, due)},
                            "gw-2": {wire.Replay(f"restore-{due}", 0, due)}}
        assert await asyncio.to_thread(replay.replay_due, engine) is None
    engine.dispose()
