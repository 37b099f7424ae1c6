"""Several HQ workers on one database and one broker ([console] share_live): a console connected to one worker
sees readings another worker ingested (the shared subscription gives each batch to one worker) and notices
another worker raised, such as an emergency offered to an expert."""

from __future__ import annotations

import asyncio
import json
import re
from typing import Any

from gateway import tomlconfig
from hq.appkeys import HUB, INGEST
from hq.config import HqConfig
from tests.integration.hq.conftest import FakeGateway, RunningHq, running_hq
from tests.support.mosquitto import Mosquitto
from tests.support.ports import free_port


def worker_config(broker: Mosquitto, db_url: str, client_id: str, *, share: bool = True) -> HqConfig:
    return tomlconfig.loads(
        f'[database]\nurl = "{db_url}"\n'
        f'[mqtt]\nhost = "{broker.host}"\nport = {broker.port}\nclient_id = "{client_id}"\n'
        f'[http]\nport = {free_port()}\n[auth]\nsecure_cookies = false\n'
        f'[console]\nshare_live = {"true" if share else "false"}\n', HqConfig, f"{client_id}.toml")


async def metric(hq: RunningHq, name: str) -> int:
    text = await (await hq.http.get(hq.url + "/metrics")).text()
    found = re.search(rf"^{name} (\d+)$", text, re.M)
    assert found, name
    return int(found.group(1))


async def received(ws: Any, want: int, timeout_s: float = 15.0) -> tuple[set[int], list[dict[str, Any]]]:
    """Observation seqs and other messages from the socket until `want` readings came (or the time is up)."""
    seqs: set[int] = set()
    others: list[dict[str, Any]] = []
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while len(seqs) < want and loop.time() < deadline:
        try:
            msg = await ws.receive_json(timeout=max(0.1, deadline - loop.time()))
        except TimeoutError:
            break
        if msg["type"] == "observations":
            seqs.update(int(i["seq"]) for i in msg["items"])
        else:
            others.append(msg)
    return seqs, others


async def test_a_console_on_one_worker_sees_what_the_other_worker_ingested_and_notified(
        broker: Mosquitto, postgres_url: str) -> None:
    async with (
        running_hq(worker_config(broker, postgres_url, "hq-a")) as a,
        running_hq(worker_config(broker, postgres_url, "hq-b")) as b,
        FakeGateway(broker) as gw,
        a.http.ws_connect(a.url + "/ws") as ws,
    ):
        await ws.send_str(json.dumps({"subscribe": {"patient_id": "P1"}}))
        assert (await ws.receive_json(timeout=5))["type"] == "subscribed"
        for seq in range(1, 21):
            await gw.send(gw.batch([seq]))
        seqs, _ = await received(ws, 20)
        ingested = {name: hq.app[INGEST].stats.batches for name, hq in (("a", a), ("b", b))}
        assert ingested["a"] + ingested["b"] == 20 and ingested["b"] > 0, ingested  # the broker split them
        assert seqs == set(range(1, 21)), "every reading reached the console on worker a"
        assert await metric(a, "hq_live_received_total") >= 1 and await metric(b, "hq_live_shared_total") >= 1

        b.app[HUB].notify({"type": "consultation.offer", "public_id": "C-1"}, roles=("expert",))
        _, others = await received(ws, 1, timeout_s=5)
        assert {"type": "consultation.offer", "public_id": "C-1"} in others  # an admin sees every role's notices


async def test_without_share_live_a_worker_keeps_its_live_updates_to_itself(broker: Mosquitto,
                                                                             postgres_url: str) -> None:
    async with (
        running_hq(worker_config(broker, postgres_url, "hq-a", share=False)) as a,
        running_hq(worker_config(broker, postgres_url, "hq-b", share=False)) as b,
        a.http.ws_connect(a.url + "/ws") as ws,
    ):
        b.app[HUB].notify({"type": "consultation.offer", "public_id": "C-2"}, roles=("expert",))
        a.app[HUB].notify({"type": "consultation.offer", "public_id": "C-3"}, roles=("expert",))
        _, others = await received(ws, 1, timeout_s=2)
        assert [m.get("public_id") for m in others if m["type"] == "consultation.offer"] == ["C-3"]
        assert "hq_live_shared_total" not in await (await a.http.get(a.url + "/metrics")).text()
