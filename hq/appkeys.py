"""Typed keys for the state `hq.app.create_app` puts on the aiohttp application.

Only the keys: the composition root fills them, handlers read them.
"""

from __future__ import annotations

import asyncio
import weakref
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from aiohttp import web

from gateway.mqttlink import MqttLink
from hq.broker_control import RevocationEnforcer
from hq.ca import CaFiles
from hq.config import HqConfig
from hq.downlink import Downlink, Receipts
from hq.gateway_events import GatewayEvents
from hq.ingest import Ingest
from hq.live import LiveHub
from hq.live_bus import LiveBus

if TYPE_CHECKING:
    from hq.calls import CallRelay
    from hq.recordings import RecordingStore

CONFIG = web.AppKey("config", HqConfig)
ENGINE = web.AppKey("engine", sa.Engine)
LINK = web.AppKey("link", MqttLink)
HUB = web.AppKey("hub", LiveHub)
# Only when [console] share_live is on: live updates passed between HQ workers.
LIVE_BUS = web.AppKey("live_bus", LiveBus)
INGEST = web.AppKey("ingest", Ingest)
CA_FILES = web.AppKey("ca_files", CaFiles)
# Only when [mqtt] dynamic_security is on: what has the broker drop and deny revoked gateways.
ENFORCER = web.AppKey("enforcer", RevocationEnforcer)
# Handlers of gateway events and of notice receipts: domain modules register theirs in `create_app`.
EVENTS = web.AppKey("events", GatewayEvents)
RECEIPTS = web.AppKey("receipts", Receipts)
DOWNLINK = web.AppKey("downlink", Downlink)
# The API's OpenAPI paths, gathered from the modules that serve them (see `hq.app.create_app`).
OPENAPI_PATHS: web.AppKey[dict[str, Any]] = web.AppKey("openapi_paths")
SOCKETS: web.AppKey[weakref.WeakSet[web.WebSocketResponse]] = web.AppKey("sockets")
# Set when a background task (MQTT link, ingest) dies: the service stops with a failure exit status
# so systemd restarts it, instead of serving pages while silently ingesting nothing.
FATAL = web.AppKey("fatal", asyncio.Future[str])
CALLS: web.AppKey[CallRelay] = web.AppKey("calls")
RECORDINGS: web.AppKey[RecordingStore] = web.AppKey("recordings")
