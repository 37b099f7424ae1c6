"""HQ's hold on the broker for revocations: Mosquitto's dynamic-security plugin drops a revoked gateway's
connection and denies it every topic, at once, on HQ's command over MQTT.

Needed because Mosquitto 2.0 checks the CRL only in new TLS handshakes and reads it only at start and on
SIGHUP: a connected gateway whose certificate is revoked would stay connected. Gateways are not clients of
the plugin (the ACL file confines them); a revoked one becomes a plugin client with a role that denies
everything, which the plugin answers before the ACL file is consulted. The CRL is `hq.revocation`'s; the
broker's configuration is in docs/broker.md.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import sqlalchemy as sa

from gateway.mqttlink import Message, MqttError, MqttLink
from hq import revocation
from hq.clock import now_ms

log = logging.getLogger(__name__)

CONTROL_TOPIC = "$CONTROL/dynamic-security/v1"
RESPONSE_TOPIC = f"{CONTROL_TOPIC}/response"
REVOKED_ROLE = "revoked-gateway"
RESPONSE_TIMEOUT_S = 5.0
RETRY_INTERVAL_S = 10.0
# Errors that mean "already as wanted": the commands are repeated after every reconnect and by every HQ worker.
_HARMLESS = {"deleteClient": {"Client not found"}, "createRole": {"Role already exists"}}


class BrokerControlError(Exception):
    """The broker did not carry out a command (or did not answer); the message says which and why."""


def role_commands() -> list[dict[str, Any]]:
    """The role of revoked gateways: every publish, delivery and subscription denied."""
    acls = [{"acltype": kind, "topic": "#", "allow": False, "priority": 100}
            for kind in ("publishClientSend", "publishClientReceive", "subscribePattern")]
    return [{"command": "createRole", "rolename": REVOKED_ROLE, "acls": acls}]


def deny_commands(gateway_id: str) -> list[dict[str, Any]]:
    """Replace whatever the plugin knows of the gateway with a disabled client holding only the revoked role.
    Creating the client disconnects the gateway (the plugin kicks every client whose access changed)."""
    return [
        {"command": "deleteClient", "username": gateway_id},
        {"command": "createClient", "username": gateway_id, "roles": [{"rolename": REVOKED_ROLE}],
         "textdescription": "revoked by HQ"},
        {"command": "disableClient", "username": gateway_id},
    ]


def check_responses(commands: list[dict[str, Any]], responses: list[dict[str, Any]]) -> None:
    """Raise BrokerControlError unless every command succeeded (or failed harmlessly, see `_HARMLESS`)."""
    if len(responses) != len(commands):
        raise BrokerControlError(f"the broker answered {len(responses)} of {len(commands)} commands")
    for command, response in zip(commands, responses, strict=True):
        error = response.get("error")
        if error and error not in _HARMLESS.get(command["command"], set()):
            target = command.get("username") or command.get("rolename") or ""
            raise BrokerControlError(f"the broker refused {command['command']} {target}: {error}")


class DynsecControl:
    """Commands to the dynamic-security plugin and their answers, matched by correlation data (every HQ worker
    sees every response)."""

    def __init__(self, link: MqttLink, *, timeout_s: float = RESPONSE_TIMEOUT_S) -> None:
        self.link = link
        self.timeout_s = timeout_s
        self._waiting: dict[str, asyncio.Future[list[dict[str, Any]]]] = {}

    @property
    def subscriptions(self) -> list[tuple[str, int]]:
        return [(RESPONSE_TOPIC, 1)]

    def on_message(self, message: Message) -> bool:
        """Take a response off the link; False if the message is not one (it is someone else's)."""
        if message.topic != RESPONSE_TOPIC:
            return False
        try:
            responses = json.loads(message.payload)["responses"]
            correlation = responses[0].get("correlationData") if responses else None
        except (ValueError, KeyError, TypeError, AttributeError):
            log.warning("ignoring a malformed dynamic-security response: %r", message.payload[:200])
            return True
        waiter = self._waiting.pop(correlation, None) if isinstance(correlation, str) else None
        if waiter is not None and not waiter.done():
            waiter.set_result(responses)
        return True

    async def send(self, commands: list[dict[str, Any]]) -> None:
        correlation = uuid.uuid4().hex
        payload = json.dumps({"commands": [{**c, "correlationData": correlation} for c in commands]}).encode()
        waiter: asyncio.Future[list[dict[str, Any]]] = asyncio.get_running_loop().create_future()
        self._waiting[correlation] = waiter
        try:
            await self.link.publish(CONTROL_TOPIC, payload, qos=1, timeout_s=self.timeout_s)
            async with asyncio.timeout(self.timeout_s):
                responses = await waiter
        except TimeoutError:
            raise BrokerControlError(f"no answer from the broker's dynamic-security plugin within "
                                     f"{self.timeout_s} s (is it loaded, and may this HQ identity use "
                                     f"{CONTROL_TOPIC}?)") from None
        except MqttError as exc:
            raise BrokerControlError(f"cannot reach the broker's dynamic-security plugin: {exc}") from exc
        finally:
            self._waiting.pop(correlation, None)
        check_responses(commands, responses)

    async def deny(self, gateway_ids: list[str]) -> None:
        commands = role_commands()
        for gateway_id in gateway_ids:
            commands += deny_commands(gateway_id)
        await self.send(commands)


class RevocationEnforcer:
    """Keeps the broker's denials in step with the revoked gateways in the database: each new revocation at
    once (`apply`), the ones the broker missed (it was unreachable) every `interval_s`, and all of them again
    after every reconnect (the broker may have lost its plugin state)."""

    def __init__(self, engine: sa.Engine, control: DynsecControl, *, interval_s: float = RETRY_INTERVAL_S,
                 on_applied: Callable[[list[str]], Awaitable[None]] | None = None) -> None:
        self.engine = engine
        self.control = control
        self.interval_s = interval_s
        self._resync = True
        self._wake = asyncio.Event()
        self._lock = asyncio.Lock()
        self._on_applied = on_applied
        self.applied_total = 0
        self.failures_total = 0

    def on_connect(self) -> None:
        self._resync = True
        self._wake.set()

    async def apply(self, gateway_ids: list[str]) -> int:
        """Deny these gateways now; returns when the broker confirmed (the time it confirmed, Unix ms).
        Raises BrokerControlError; the gateways stay pending and are retried."""
        async with self._lock:
            await self.control.deny(gateway_ids)
            at = now_ms()
            await asyncio.to_thread(revocation.mark_broker_applied, self.engine, gateway_ids, at)
        self.applied_total += len(gateway_ids)
        if self._on_applied is not None:
            await self._on_applied(gateway_ids)
        return at

    async def run(self) -> None:
        while True:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.interval_s):
                    await self._wake.wait()
            self._wake.clear()
            if not self.control.link.is_connected:
                continue
            resync, self._resync = self._resync, False
            try:
                ids = await asyncio.to_thread(revocation.all_revoked if resync else revocation.pending_broker,
                                              self.engine)
                if ids:
                    await self.apply(ids)
                    log.info("broker denies %d revoked gateway(s)%s", len(ids), " (resync)" if resync else "")
            except (BrokerControlError, sa.exc.SQLAlchemyError) as exc:
                self._resync = self._resync or resync
                self.failures_total += 1
                log.error("revoked gateways not yet denied by the broker (retrying in %.0f s): %s",
                          self.interval_s, exc)
