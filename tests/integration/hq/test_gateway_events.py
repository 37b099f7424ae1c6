"""Gateway events reach their handler inside the ingest transaction, once per event however often the batch is
redelivered; a malformed event's work is rolled back while the event itself is kept and the batch acknowledged."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa

from gateway import wire
from hq.appkeys import ENGINE, EVENTS
from hq.gateway_events import EventContext, EventError
from hq.models import hq_meta
from tests.integration.hq.conftest import FakeGateway, eventually, hq_config, running_hq
from tests.support.mosquitto import Mosquitto


def handler(ctx: EventContext, row: dict[str, Any]) -> None:
    ctx.conn.execute(hq_meta.insert().values(key=f"event-{row['seq']}", value=row["extra"]["note"]))
    if row["extra"].get("bad"):
        raise EventError("extra.bad: this event is malformed on purpose")
    ctx.notify({"type": "test-event", "seq": row["seq"]}, roles=["coordinator"])


async def test_events_are_handled_once_in_the_ingest_transaction(broker: Mosquitto, db_url: str) -> None:
    async with running_hq(hq_config(broker, db_url)) as hq, FakeGateway(broker) as gw:
        events = hq.app[EVENTS]
        events.register("TEST_EVENT", handler)
        good = gw.batch([1], lane=wire.Lane.ALARM, kind="event", metric="TEST_EVENT", extra={"note": "first"})
        bad = gw.batch([2], lane=wire.Lane.ALARM, kind="event", metric="TEST_EVENT", extra={"note": "x", "bad": True})
        for batch in (good, good, bad):  # the first twice: a QoS 1 redelivery
            await gw.send(batch)
        for _ in range(3):
            await gw.next_ack()

        def meta() -> dict[str, str]:
            with hq.app[ENGINE].connect() as conn:
                return {k: v for k, v in conn.execute(sa.select(hq_meta.c.key, hq_meta.c.value))
                        if k.startswith("event-")}

        async def both_stored() -> bool:
            return len((await hq.get_json("/api/v1/observations?kind=event"))["observations"]) == 2

        await eventually(both_stored, what="both events stored")
        assert meta() == {"event-1": "first"}  # handled once; the bad one's insert rolled back
        assert events.handled_total == 1 and events.rejected_total == 1
