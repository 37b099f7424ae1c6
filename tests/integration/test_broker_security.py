"""The broker's secure setup (docs/broker.md) against real Mosquitto and real certificates from HQ's CA: mutual
TLS, the certificate's CN as username, gateways confined to their own prefix, foreign and revoked certificates
refused, and a revoked gateway dropped at once by the dynamic-security plugin on HQ's command."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import ssl
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from gateway import wire
from gateway.mqttlink import LinkSettings, Message, MqttLink, NotConnected, PublishRefused, TlsSettings
from hq import ca, live_bus
from hq.broker_control import DynsecControl
from tests.support.mosquitto import BrokerTls, ClientIdentity, Mosquitto, probe_connect

NOT_AUTHORISED = 135


@pytest.fixture
def secure_broker(tmp_path: Path) -> Iterator[Mosquitto]:
    with Mosquitto(tls=BrokerTls(tmp_path / "ca")) as broker:
        yield broker


class Client:
    """A real MqttLink with a certificate, recording what it receives and when it lost its connection."""

    def __init__(self, broker: Mosquitto, identity: ClientIdentity, client_id: str,
                 subscriptions: list[str] | None = None) -> None:
        self.received: list[Message] = []
        self.disconnected_at: list[float] = []
        settings = LinkSettings(broker.host, broker.port, client_id, backoff_initial_s=0.1, backoff_max_s=0.5,
                                tls=TlsSettings(str(identity.ca_file), str(identity.cert_file),
                                                str(identity.key_file)))
        self.link = MqttLink(settings, subscriptions=[(t, 1) for t in subscriptions or []],
                             on_message=self.received.append,
                             on_disconnect=lambda: self.disconnected_at.append(time.monotonic()))

    def topics(self) -> list[str]:
        return [m.topic for m in self.received]


@contextlib.asynccontextmanager
async def connected(*clients: Client) -> AsyncIterator[None]:
    tasks = [asyncio.create_task(c.link.run()) for c in clients]
    try:
        for c in clients:
            await c.link.wait_connected(10)
        yield
    finally:
        for c in clients:
            await c.link.close()
        for t in tasks:
            t.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await t



async def test_a_gateway_publishes_only_under_its_own_prefix(secure_broker: Mosquitto) -> None:
    hq = Client(secure_broker, secure_broker.issue_client("hq-1"), "hq-1",
                [wire.HQ_DATA_SUBSCRIPTION, wire.HQ_STATUS_SUBSCRIPTION])
    a = Client(secure_broker, secure_broker.issue_client("gw-a"), "gw-a")
    async with connected(hq, a):
        await a.link.publish(wire.data_topic("gw-a"), b"own data")
        await a.link.publish(wire.status_topic("gw-a"), b"own status")
        for topic in (wire.data_topic("gw-b"), wire.status_topic("gw-b"), wire.ack_topic("gw-b"),
                      "clinic/gw-b", "elsewhere/x", "$CONTROL/dynamic-security/v1"):
            with pytest.raises(PublishRefused) as refused:
                await a.link.publish(topic, b"forged")
            assert refused.value.reason.value == NOT_AUTHORISED, topic
        await asyncio.sleep(0.5)
    assert sorted(hq.topics()) == [wire.data_topic("gw-a"), wire.status_topic("gw-a")]


async def test_a_gateway_subscribed_to_another_clinic_receives_nothing(secure_broker: Mosquitto) -> None:
    hq = Client(secure_broker, secure_broker.issue_client("hq-1"), "hq-1", [wire.HQ_DATA_SUBSCRIPTION])
    a = Client(secure_broker, secure_broker.issue_client("gw-a"), "gw-a",
               ["clinic/gw-b/#", "clinic/+/up/data", "clinic/+/down/#", "#"])
    b = Client(secure_broker, secure_broker.issue_client("gw-b"), "gw-b", ["clinic/gw-b/down/#"])
    async with connected(hq, a, b):
        await hq.link.publish(wire.ack_topic("gw-b"), b"for b only")
        await b.link.publish(wire.data_topic("gw-b"), b"from b")
        await hq.link.publish(wire.ack_topic("gw-a"), b"for a")  # a's subscriptions do work for its own topics
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and not (b.received and hq.received and a.received):
            await asyncio.sleep(0.05)
        await asyncio.sleep(0.5)  # anything wrongly routed to a would have arrived by now
    assert b.topics() == [wire.ack_topic("gw-b")]
    assert hq.topics() == [wire.data_topic("gw-b")]
    assert set(a.topics()) == {wire.ack_topic("gw-a")}  # (once per overlapping subscription)


async def test_the_hq_workers_live_topic_is_theirs_alone(secure_broker: Mosquitto) -> None:
    """Live updates between HQ workers carry patient data: HQ's identities use hq/live/#, a gateway can
    neither publish there nor read it."""
    hq1 = Client(secure_broker, secure_broker.issue_client("hq-1"), "hq-1", [live_bus.SUBSCRIPTION])
    gw = Client(secure_broker, secure_broker.issue_client("gw-a"), "gw-a", [live_bus.SUBSCRIPTION, "hq/#"])
    async with connected(hq1, gw):
        await hq1.link.publish(live_bus.TOPIC_PREFIX + "hq-1", b"readings", qos=1)
        with pytest.raises(PublishRefused) as refused:
            await gw.link.publish(live_bus.TOPIC_PREFIX + "hq-2", b"forged notice", qos=1)
        assert refused.value.reason.value == NOT_AUTHORISED
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and not hq1.received:
            await asyncio.sleep(0.05)
        await asyncio.sleep(0.5)
    assert hq1.topics() == [live_bus.TOPIC_PREFIX + "hq-1"] and gw.topics() == []


def test_certificates_the_broker_refuses(secure_broker: Mosquitto, tmp_path: Path) -> None:
    assert probe_connect(secure_broker, secure_broker.issue_client("gw-a")) == "connected"
    foreign = ca.CaFiles(tmp_path / "foreign")
    foreign_ca = foreign.create("Someone else's CA", now=dt.datetime.now(dt.UTC), validity_days=3650)
    key, cert = ca.issue_identity(foreign_ca, "gw-a", now=dt.datetime.now(dt.UTC), validity_days=30)
    key_path, cert_path = ca.write_identity(tmp_path, "foreign-gw-a", key, cert)
    impostor = ClientIdentity(foreign.cert_path, cert_path, key_path)
    expired_key, expired_cert = ca.issue_identity(ca.CaFiles(tmp_path / "ca").load(), "gw-a",
                                                  now=dt.datetime.now(dt.UTC) - dt.timedelta(days=40),
                                                  validity_days=30)
    expired = ClientIdentity(tmp_path / "ca" / "ca.pem", *reversed(ca.write_identity(tmp_path, "expired-gw-a",
                                                                                     expired_key, expired_cert)))
    for name, identity in (("another CA's certificate", impostor), ("an expired certificate", expired),
                           ("no certificate", None)):
        assert probe_connect(secure_broker, identity) != "connected", name
    assert probe_connect(secure_broker, secure_broker.issue_client("gw-a"),
                           tls_version=ssl.TLSVersion.TLSv1_1) != "connected"
    assert probe_connect(secure_broker, secure_broker.issue_client("gw-a"),
                           tls_version=ssl.TLSVersion.TLSv1_2) == "connected"


def revoke_in_crl(broker: Mosquitto, *serials: int) -> None:
    """Write a CRL listing `serials`, as HQ's revocation does (the broker's watcher reloads it)."""
    assert broker.tls is not None
    files = ca.CaFiles(broker.tls.ca_dir)
    now = dt.datetime.now(dt.UTC)
    previous = files.read_crl()
    last = ca.crl_last_update(previous.last_update_utc if previous is not None else None, now)
    files.write_crl(ca.build_crl(files.load(), [(s, now) for s in serials], last_update=last,
                                 next_update=now + dt.timedelta(days=30)))


def serial_of(identity: ClientIdentity) -> int:
    from cryptography import x509

    return x509.load_pem_x509_certificate(identity.cert_file.read_bytes()).serial_number


async def test_a_crl_reload_alone_leaves_the_revoked_gateway_connected(secure_broker: Mosquitto) -> None:
    """Mosquitto 2.0 checks the CRL in new handshakes only: why HQ also has the plugin drop the gateway."""
    identity = secure_broker.issue_client("gw-a")
    a = Client(secure_broker, identity, "gw-a")
    async with connected(a):
        reloads = secure_broker.reloads
        revoke_in_crl(secure_broker, serial_of(identity))
        while secure_broker.reloads == reloads:
            await asyncio.sleep(0.05)
        await asyncio.sleep(0.5)
        assert probe_connect(secure_broker, identity) != "connected"  # a new handshake is refused...
        await a.link.publish(wire.data_topic("gw-a"), b"still here")  # ...the old connection carries on
        assert a.disconnected_at == []


async def test_a_revoked_gateway_is_dropped_at_once_and_refused_from_then_on(secure_broker: Mosquitto) -> None:
    identity = secure_broker.issue_client("gw-a")
    hq = Client(secure_broker, secure_broker.issue_client("hq-1"), "hq-1", [wire.HQ_DATA_SUBSCRIPTION])
    control = DynsecControl(hq.link)
    hq.link.set_handlers(subscriptions=[(wire.HQ_DATA_SUBSCRIPTION, 1), *control.subscriptions],
                         on_message=lambda m: control.on_message(m) or hq.received.append(m))
    a = Client(secure_broker, identity, "gw-a")
    b = Client(secure_broker, secure_broker.issue_client("gw-b"), "gw-b")
    async with connected(hq, a, b):
        await a.link.publish(wire.data_topic("gw-a"), b"before")
        started = time.monotonic()
        revoke_in_crl(secure_broker, serial_of(identity))
        await control.deny(["gw-a"])
        confirmed = time.monotonic()
        while not a.disconnected_at and time.monotonic() - started < 5:
            await asyncio.sleep(0.001)
        assert a.disconnected_at, "the revoked gateway was not disconnected"
        kicked_ms = (a.disconnected_at[0] - started) * 1000
        print(f"revocation: broker confirmed after {(confirmed - started) * 1000:.1f} ms, "
              f"gateway disconnected after {kicked_ms:.1f} ms")
        assert kicked_ms < 1000
        # Whatever it does from now on, nothing it publishes is accepted: denied by the plugin at once, and
        # refused in the TLS handshake once the broker has reloaded the CRL (the watcher does within ~100 ms).
        deadline = time.monotonic() + 2
        while time.monotonic() < deadline:
            with contextlib.suppress(NotConnected, PublishRefused):
                await a.link.publish(wire.data_topic("gw-a"), b"after", timeout_s=1)
                raise AssertionError("a revoked gateway's publish was accepted")
            await asyncio.sleep(0.05)
        assert probe_connect(secure_broker, identity) != "connected"
        await b.link.publish(wire.data_topic("gw-b"), b"unaffected")
        await asyncio.sleep(0.3)
        assert b.disconnected_at == []
    assert [m.payload for m in hq.received] == [b"before", b"unaffected"]
