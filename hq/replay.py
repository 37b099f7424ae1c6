"""After HQ's database is restored from its replica, the gateways send again what the lost commits held.

A replica lags the live database by about a second, and HQ's last commits before the loss were already
confirmed to the gateways, which then stopped sending them. `python -m hq restore` marks the restored
database (`mark_replay_due`); at the next start `request_replays` publishes one retained request per
known gateway, from that gateway's restored `complete_below` (every seq below it is in the restored
database), then clears the mark. Gateways keep confirmed entries for `outbox.retain_sent_h` to answer it;
HQ's (gateway_id, seq) key makes whatever it already holds a harmless duplicate.
"""

from __future__ import annotations

import asyncio
import logging

import sqlalchemy as sa

from gateway import wire
from gateway.mqttlink import MqttError, MqttLink
from hq.clock import now_ms
from hq.db import create_schema
from hq.models import gateways, hq_meta
from hq.store import dialect_insert

log = logging.getLogger(__name__)

REPLAY_DUE_KEY = "replay_due_ms"
RETRY_S = 2.0


def mark_replay_due(engine: sa.Engine, at_ms: int | None = None) -> int:
    """Record that this (restored) database must have the gateways replay; returns the mark's time."""
    at = now_ms() if at_ms is None else at_ms
    create_schema(engine)
    insert = dialect_insert(engine)
    with engine.begin() as conn:
        conn.execute(insert(hq_meta).values(key=REPLAY_DUE_KEY, value=str(at))
                     .on_conflict_do_update(index_elements=["key"], set_={"value": str(at)}))
    return at


def replay_due(engine: sa.Engine) -> int | None:
    with engine.connect() as conn:
        value = conn.execute(sa.select(hq_meta.c.value).where(hq_meta.c.key == REPLAY_DUE_KEY)).scalar()
    return None if value is None else int(value)


def replay_requests(engine: sa.Engine, due_ms: int) -> list[tuple[str, wire.Replay]]:
    """One request per gateway this database knows, from the seq below which it holds everything."""
    with engine.connect() as conn:
        rows = conn.execute(sa.select(gateways.c.id, gateways.c.complete_below).order_by(gateways.c.id)).all()
    return [(gw, wire.Replay(f"restore-{due_ms}", int(below), due_ms)) for gw, below in rows]


def clear_replay_due(engine: sa.Engine, due_ms: int) -> None:
    # Only the mark these requests answered: a restore done meanwhile leaves its own mark in place.
    with engine.begin() as conn:
        conn.execute(hq_meta.delete().where(hq_meta.c.key == REPLAY_DUE_KEY, hq_meta.c.value == str(due_ms)))


async def request_replays(engine: sa.Engine, link: MqttLink) -> int:
    """If the database was restored, ask every gateway to replay; returns how many were asked."""
    due = await asyncio.to_thread(replay_due, engine)
    if due is None:
        return 0
    requests = await asyncio.to_thread(replay_requests, engine, due)
    for gateway_id, replay in requests:
        while True:
            await link.wait_connected()
            try:
                await link.publish(wire.replay_topic(gateway_id), wire.encode_replay(replay), qos=1, retain=True)
                break
            except MqttError as exc:
                log.warning("replay request to gateway %s not sent yet: %s", gateway_id, exc)
                await asyncio.sleep(RETRY_S)
        log.warning("database was restored: gateway %s asked to replay from seq %d", gateway_id, replay.from_seq)
    await asyncio.to_thread(clear_replay_due, engine, due)
    return len(requests)
