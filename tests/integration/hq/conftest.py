"""HQ under test: the real app on a free port against real Mosquitto and SQLite or PostgreSQL, plus a fake
gateway that publishes batches and statuses and collects HQ's acks through its own `MqttLink`."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass
from typing import Any

import aiohttp
import pytest
import sqlalchemy as sa
from aiohttp import web

from gateway import tomlconfig, wire
from gateway.mqttlink import LinkSettings, Message, MqttLink
from hq import db
from hq.app import create_app
from hq.config import HqConfig
from tests.support import accounts
from tests.support.mosquitto import Mosquitto
from tests.support.ports import free_port


def hq_config(broker: Mosquitto, db_url: str, extra: str = "") -> HqConfig:
    text = (f'[database]\nurl = "{db_url}"\n[mqtt]\nhost = "{broker.host}"\nport = {broker.port}\n'
            f'[http]\nport = {free_port()}\n{extra}')
    if "[auth]" not in extra:
        text += "\n[auth]\nsecure_cookies = false\n"
    return tomlconfig.loads(text, HqConfig, "test.toml")


@dataclass
class RunningHq:
    app: web.Application
    url: str
    http: aiohttp.ClientSession  # sends the admin's API token
    db_url: str
    admin_token: str

    async def get_json(self, path: str, status: int = 200, token: str | None = None) -> Any:
        headers = {"Authorization": f"Bearer {token}"} if token else None
        async with self.http.get(self.url + path, headers=headers) as resp:
            assert resp.status == status, await resp.text()
            return await resp.json()

    async def send_json(self, method: str, path: str, body: Any, status: int = 200, token: str | None = None) -> Any:
        headers = {"Authorization": f"Bearer {token}"} if token else None
        async with self.http.request(method, self.url + path, json=body, headers=headers) as resp:
            assert resp.status == status, await resp.text()
            return await resp.json()


@contextlib.asynccontextmanager
async def running_hq(config: HqConfig) -> AsyncIterator[RunningHq]:
    app = create_app(config)
    runner = web.AppRunner(app, handle_signals=False)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", config.http.port)
    await site.start()
    from hq.appkeys import LINK

    try:
        await app[LINK].wait_connected(10)
        token = await asyncio.to_thread(accounts.user_with_token, config.database.url, "admin", "admin")
        async with aiohttp.ClientSession(headers={"Authorization": f"Bearer {token}"}) as http:
            yield RunningHq(app, f"http://127.0.0.1:{config.http.port}", http, config.database.url, token)
    finally:
        await runner.cleanup()


class FakeGateway:
    """Acts as a gateway on the wire: publishes batches/statuses, receives acks."""

    def __init__(self, broker: Mosquitto, gateway_id: str = "gw-1", clinic_id: str = "clinic-a",
                 client_id: str | None = None) -> None:
        self.gateway_id = gateway_id
        self.clinic_id = clinic_id
        self.acks: asyncio.Queue[wire.Ack] = asyncio.Queue()
        self.link = MqttLink(LinkSettings(broker.host, broker.port, client_id or gateway_id),
                             subscriptions=[(wire.ack_topic(gateway_id), 1)], on_message=self._on_message)
        self._task: asyncio.Task[None] | None = None

    def _on_message(self, message: Message) -> None:
        self.acks.put_nowait(wire.decode_ack(message.payload))

    async def __aenter__(self) -> FakeGateway:
        self._task = asyncio.create_task(self.link.run())
        await self.link.wait_connected(10)
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.link.close()
        assert self._task is not None
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task

    def batch(self, seqs: range | list[int], *, lane: wire.Lane = wire.Lane.VITALS, patient_id: str = "P1",
              metric: str = "MDC_PULS_OXIM_SAT_O2", value: float = 97.0, time_ms: int | None = None,
              kind: str = "observation", extra: dict[str, Any] | None = None) -> wire.Batch:
        now = int(time.time() * 1000)
        t = now if time_ms is None else time_ms
        records = [wire.WireRecord(s, kind, metric, value, "%", t + i, now, patient_id, "ox-1", extra)
                   for i, s in enumerate(seqs)]
        return wire.Batch(self.gateway_id, self.clinic_id, lane, now, records)

    async def send(self, batch: wire.Batch) -> None:
        await self.link.publish(wire.data_topic(self.gateway_id), wire.encode_batch(batch), qos=1)

    async def send_raw(self, payload: bytes) -> None:
        await self.link.publish(wire.data_topic(self.gateway_id), payload, qos=1)

    async def send_status(self, state: wire.GatewayState = wire.GatewayState.ONLINE, **kw: Any) -> None:
        now = int(time.time() * 1000)
        status = wire.Status(state, self.clinic_id, now, "gw-test 1.0", now - 5000, **kw)
        await self.link.publish(wire.status_topic(self.gateway_id), wire.encode_status(status), qos=1, retain=True)

    async def next_ack(self, timeout_s: float = 10.0) -> wire.Ack:
        return await asyncio.wait_for(self.acks.get(), timeout_s)


async def eventually(check: Callable[[], Awaitable[bool]], timeout_s: float = 10.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout_s
    while not await check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s} s waiting for {what}")
        await asyncio.sleep(0.05)


@pytest.fixture
def engine(db_url: str) -> Iterator[sa.Engine]:
    """An engine on a freshly migrated database (SQLite and PostgreSQL)."""
    e = db.create_engine_for(db_url)
    db.upgrade_schema(e)
    yield e
    e.dispose()
