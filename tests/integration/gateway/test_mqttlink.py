"""MqttLink against a real Mosquitto behind the test network proxy: how it reconnects."""

from __future__ import annotations

import asyncio
import contextlib

from gateway.mqttlink import LinkSettings, MqttLink
from tests.support.mosquitto import Mosquitto
from tests.support.netproxy import CutMode, NetProxy


async def test_a_reset_before_the_connack_is_retried_at_once_not_after_the_connect_timeout(
        broker: Mosquitto) -> None:
    # A middlebox (or load balancer) with no broker behind it completes the TCP handshake, then resets:
    # each attempt must fail then and there, not wait out connect_timeout_s for a CONNACK.
    with NetProxy(broker.host, broker.port) as proxy:
        proxy.cut(CutMode.RESET)
        link = MqttLink(LinkSettings(proxy.host, proxy.port, "gw-reset", connect_timeout_s=10.0,
                                     backoff_initial_s=0.2, backoff_max_s=0.5))
        task = asyncio.create_task(link.run())
        try:
            await asyncio.sleep(2.5)
            assert proxy.counters.connections_refused >= 3, proxy.counters
            assert not link.is_connected
            proxy.restore()
            await link.wait_connected(timeout_s=3.0)
            assert link.connects == 1
        finally:
            await link.close()
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
