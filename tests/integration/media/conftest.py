"""A call's whole path in one process: real Mosquitto, HQ (the real app, SQLite), the real gateway
(`gateway.app.run`) with an RTSP camera, and Python participants signalling through HQ's WebSocket."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import sqlalchemy as sa

from gateway import app as gateway_app
from gateway import tomlconfig
from gateway.config import GatewayConfig
from hq.appkeys import ENGINE
from hq.models import consultations
from tests.integration.hq.conftest import RunningHq, hq_config, running_hq
from tests.support import accounts
from tests.support.call_client import loopback_ice
from tests.support.mosquitto import Mosquitto
from tests.support.ports import free_port
from tests.support.rtsp_camera import RtspCamera, load_ts
from tests.support.synthetic_camera import write_ts

GATEWAY = "gw-call"
CLINIC = "clinic-call"
CONSULTATION = "C-2025-0001"


@pytest.fixture(scope="module")
def clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_ts(tmp_path_factory.mktemp("media") / "clip.ts", seconds=3)


@dataclass
class CallStack:
    hq: RunningHq
    camera: RtspCamera
    gateway_http: str
    consultation: str
    dir: Path
    db_url: str

    def token(self, username: str, role: str = "coordinator", display_name: str | None = None) -> str:
        """An API token of a console user (made if new) who may join calls: a coordinator by default."""
        clinic = CLINIC if role == "clinic_staff" else None
        if display_name is not None:
            accounts.add_user(self.db_url, username, role, display_name=display_name, clinic_id=clinic)
        return accounts.user_with_token(self.db_url, username, role, clinic_id=clinic)

    @property
    def engine(self) -> sa.Engine:
        return self.hq.app[ENGINE]


def gateway_config_text(broker: Mosquitto, data_dir: Path, camera_url: str, http_port: int, media: str) -> str:
    return (f'[gateway]\nid = "{GATEWAY}"\nclinic_id = "{CLINIC}"\ndata_dir = "{data_dir}"\n'
            f'[mqtt]\nhost = "{broker.host}"\nport = {broker.port}\n[status]\nheartbeat_s = 2\n'
            f'[http]\nport = {http_port}\n[replication]\nenabled = false\n'
            f'[media]\nice_host_addresses = ["127.0.0.1"]\nstats_interval_s = 1\n{media}\n'
            f'[[camera]]\nid = "room"\nurl = "{camera_url}"\nlabel = "Room camera"\n')


async def wait_for(check: object, timeout_s: float = 20.0, what: str = "condition") -> object:
    deadline = time.monotonic() + timeout_s
    while True:
        value = await check() if asyncio.iscoroutinefunction(check) else check()  # type: ignore[operator]
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} not met within {timeout_s} s")
        await asyncio.sleep(0.1)


def add_consultation(engine: sa.Engine, public_id: str = CONSULTATION) -> None:
    now = int(time.time() * 1000)
    with engine.begin() as conn:
        conn.execute(consultations.insert().values(public_id=public_id, kind="routine", status="in_session",
                                                   clinic_id=CLINIC, gateway_id=GATEWAY, requested_ms=now,
                                                   received_ms=now))


@contextlib.asynccontextmanager
async def call_stack(broker: Mosquitto, tmp_path: Path, clip: Path, *, media: str = "", hq_extra: str = ""
                     ) -> AsyncIterator[CallStack]:
    with loopback_ice():
        db_url = f"sqlite:///{tmp_path / 'hq.db'}"
        async with running_hq(hq_config(broker, db_url, hq_extra)) as hq, \
                RtspCamera(load_ts(clip)) as camera:
            http_port = free_port()
            config = tomlconfig.loads(gateway_config_text(broker, tmp_path / "gw", camera.url, http_port, media),
                                      GatewayConfig, "gateway.toml")
            stop = asyncio.Event()
            gateway = asyncio.create_task(gateway_app.run(config, stop))
            try:
                async def online() -> bool:
                    gateways = (await hq.get_json("/api/v1/gateways"))["gateways"]
                    return any(g["gateway_id"] == GATEWAY and g["status"] == "online" for g in gateways)
                await wait_for(online, what="the gateway online at HQ")
                add_consultation(hq.app[ENGINE])
                yield CallStack(hq, camera, f"http://127.0.0.1:{http_port}", CONSULTATION, tmp_path, db_url)
            finally:
                stop.set()
                await asyncio.wait_for(gateway, 30)
