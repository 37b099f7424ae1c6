"""A real Mosquitto broker on a loopback port, started and stopped by tests and benchmarks: plain MQTT, or the
fleet's secure setup (mutual TLS with certificates from HQ's CA, the ACL file, the CRL and the dynamic-security
plugin) exactly as docs/broker.md describes it for production."""

from __future__ import annotations

import datetime as dt
import json
import os
import shutil
import signal
import socket
import ssl
import subprocess
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from tests.support.ports import free_port, wait_port


def _dynsec_plugin() -> Path:
    """Debian's mosquitto package installs the plugin in the architecture's library directory."""
    found = sorted(Path("/usr/lib").glob("*/mosquitto_dynamic_security.so"))
    return found[0] if found else Path("/usr/lib/x86_64-linux-gnu/mosquitto_dynamic_security.so")


DYNSEC_PLUGIN = _dynsec_plugin()
HQ_ADMIN_ROLE = "hq-broker-admin"


@dataclass(frozen=True)
class BrokerTls:
    """The broker's secure mode. `ca_dir` is a CA in `hq.ca.CaFiles`' layout (made if missing): the broker
    trusts it and reads its crl.pem. `hq_identities` are the broker users (certificate CNs) of HQ's workers."""

    ca_dir: Path
    hq_identities: tuple[str, ...] = ("hq-1",)
    dynamic_security: bool = True
    # Reload the broker when crl.pem changes, as the systemd path unit of docs/broker.md does in production.
    reload_on_crl_change: bool = True


@dataclass(frozen=True)
class ClientIdentity:
    """Files of a TLS client identity issued by the broker's CA."""

    ca_file: Path
    cert_file: Path
    key_file: Path


def acl_text(hq_identities: tuple[str, ...]) -> str:
    """The ACL file: HQ's identities read and write every clinic's topics and HQ's own (the workers' live
    updates, `hq.live_bus`), a gateway only its own prefix."""
    users = "".join(f"user {name}\ntopic readwrite clinic/#\ntopic readwrite hq/live/#\n\n"
                    for name in hq_identities)
    return f"{users}pattern readwrite clinic/%u/#\n"


def dynsec_config(hq_identities: tuple[str, ...]) -> dict[str, object]:
    """The dynamic-security plugin's first configuration: HQ's identities may send it commands; nothing else is
    granted by default, so every other check falls through to the ACL file."""
    control = "$CONTROL/dynamic-security/#"
    return {
        "defaultACLAccess": {"publishClientSend": False, "publishClientReceive": False, "subscribe": False,
                             "unsubscribe": False},
        "clients": [{"username": name, "textdescription": "HQ worker", "roles": [{"rolename": HQ_ADMIN_ROLE}]}
                    for name in hq_identities],
        "groups": [],
        "roles": [{"rolename": HQ_ADMIN_ROLE, "acls": [
            {"acltype": "publishClientSend", "topic": control, "allow": True},
            {"acltype": "publishClientReceive", "topic": control, "allow": True},
            {"acltype": "subscribePattern", "topic": control, "allow": True},
        ]}],
    }


class Mosquitto:
    """`with Mosquitto() as broker:` runs /usr/sbin/mosquitto with persistence in a temp dir.

    `stop()` / `start()` restart it on the same port and data dir (for broker-restart tests); `reload()` sends
    SIGHUP (Mosquitto then re-reads its ACL file and CRL).
    """

    def __init__(self, port: int | None = None, extra_config: str = "", tls: BrokerTls | None = None) -> None:
        binary = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
        if not os.path.exists(binary):
            raise RuntimeError("mosquitto is not installed; run `make test`, which installs it with apt")
        self.binary = binary
        self.host = "127.0.0.1"
        self.port = port or free_port()
        self.dir = Path(tempfile.mkdtemp(prefix="mosquitto-"))
        self.config = self.dir / "mosquitto.conf"
        self.tls = tls
        lines = [
            "persistence true",
            f"persistence_location {self.dir}/",
            "max_queued_messages 100000",
            "max_inflight_messages 100",
            "log_dest stderr",
            "log_type error",
            "log_type warning",
        ]
        if os.geteuid() == 0:
            lines.append("user root")
        lines += self._tls_lines(tls) if tls else [f"listener {self.port} {self.host}", "allow_anonymous true"]
        self.config.write_text("\n".join(lines) + "\n" + extra_config)
        self.proc: subprocess.Popen[bytes] | None = None
        self.reloads = 0
        self._watch_stop = threading.Event()
        self._watcher: threading.Thread | None = None

    # ---- the secure setup -------------------------------------------------------------------------------
    @property
    def url_scheme(self) -> str:
        return "mqtts" if self.tls else "mqtt"

    def _tls_lines(self, tls: BrokerTls) -> list[str]:
        from hq import ca

        now = dt.datetime.now(dt.UTC)
        files = ca.CaFiles(tls.ca_dir)
        authority = files.load_or_create("Test fleet CA", now=now, validity_days=3650)
        if files.read_crl() is None:
            files.write_crl(ca.build_crl(authority, [], last_update=ca.crl_last_update(None, now),
                                         next_update=now + dt.timedelta(days=30)))
        key, cert = ca.issue_identity(authority, "broker", now=now, validity_days=30,
                                      server_names=[self.host, "localhost"])
        key_path, cert_path = ca.write_identity(self.dir, "broker", key, cert)
        (self.dir / "clinic.acl").write_text(acl_text(tls.hq_identities))
        lines = ["log_type notice",  # connections, refusals and kicks: what a security test wants to see
                 "per_listener_settings false", "allow_anonymous false", f"acl_file {self.dir / 'clinic.acl'}"]
        if tls.dynamic_security:
            (self.dir / "dynamic-security.json").write_text(json.dumps(dynsec_config(tls.hq_identities), indent=1))
            lines += [f"plugin {DYNSEC_PLUGIN}", f"plugin_opt_config_file {self.dir / 'dynamic-security.json'}"]
        return [
            *lines,
            f"listener {self.port} {self.host}",
            f"cafile {files.cert_path}",
            f"certfile {cert_path}",
            f"keyfile {key_path}",
            f"crlfile {files.crl_path}",
            "require_certificate true",
            "use_identity_as_username true",
            "tls_version tlsv1.2",
        ]

    def issue_client(self, cn: str, directory: Path | None = None, *, days: int = 30) -> ClientIdentity:
        """A client certificate for `cn` from the broker's CA (its broker username is `cn`), written to
        `directory` (default: the broker's own)."""
        from hq import ca

        assert self.tls is not None, "issue_client needs the broker's TLS mode"
        files = ca.CaFiles(self.tls.ca_dir)
        key, cert = ca.issue_identity(files.load(), cn, now=dt.datetime.now(dt.UTC), validity_days=days)
        out = directory or self.dir
        key_path, cert_path = ca.write_identity(out, cn, key, cert)
        return ClientIdentity(files.cert_path, cert_path, key_path)

    # ---- process --------------------------------------------------------------------------------------------
    def start(self) -> None:
        self.proc = subprocess.Popen(
            [self.binary, "-c", str(self.config)],
            stdout=subprocess.DEVNULL,
            stderr=open(self.dir / "broker.log", "ab"),  # noqa: SIM115
        )
        wait_port(self.host, self.port)
        if self.tls is not None and self.tls.reload_on_crl_change and self._watcher is None:
            self._watch_stop.clear()
            self._watcher = threading.Thread(target=self._watch_crl, name="crl-watch", daemon=True)
            self._watcher.start()

    def reload(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGHUP)
            self.reloads += 1

    def _watch_crl(self) -> None:
        assert self.tls is not None
        path = self.tls.ca_dir / "crl.pem"

        def stamp() -> tuple[int, int] | None:
            try:
                st = path.stat()
            except FileNotFoundError:
                return None
            return st.st_ino, st.st_mtime_ns

        seen = stamp()
        while not self._watch_stop.wait(0.05):
            now = stamp()
            if now != seen:
                seen = now
                self.reload()

    def stop(self, kill: bool = False) -> None:
        self._watch_stop.set()
        if self._watcher is not None:
            self._watcher.join(5)
            self._watcher = None
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL if kill else signal.SIGTERM)
            self.proc.wait(10)
        self.proc = None

    def log(self) -> str:
        path = self.dir / "broker.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def __enter__(self) -> Mosquitto:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)


def _connect_packet(client_id: str) -> bytes:
    """An MQTT 5 CONNECT with a clean start, a 10 s keep-alive and no properties."""
    cid = client_id.encode()
    body = b"\x00\x04MQTT\x05\x02\x00\x0a\x00" + len(cid).to_bytes(2, "big") + cid
    assert len(body) < 128  # one-byte remaining length
    return bytes([0x10, len(body)]) + body


class BrokerAddress(Protocol):
    host: str
    port: int


def probe_connect(broker: Mosquitto, identity: ClientIdentity | None, *, ca_file: Path | None = None,
                  tls_version: ssl.TLSVersion | None = None, timeout_s: float = 5.0) -> str:
    """`probe_connect_at` the test broker, verifying it with its own CA unless `ca_file` says otherwise."""
    assert broker.tls is not None
    return probe_connect_at(broker, ca_file or broker.tls.ca_dir / "ca.pem", identity, tls_version=tls_version,
                            timeout_s=timeout_s)


def probe_connect_at(broker: BrokerAddress, ca_file: Path, identity: ClientIdentity | None, *,
                     tls_version: ssl.TLSVersion | None = None, timeout_s: float = 5.0) -> str:
    """"connected" if the broker accepts this client (a CONNACK with reason 0), else how it refused it: in the TLS
    handshake, by closing the connection right after it (with TLS 1.3 a refused client certificate shows only
    when the client first reads), or with a CONNACK reason code. Plain sockets, not paho: it answers in
    milliseconds, so revocation latencies measured with it are the broker's, not the probe's. Any broker: the
    deployment test runs it inside a provisioned HQ against the broker Ansible set up."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.load_verify_locations(str(ca_file))
    if tls_version is not None:
        ctx.set_ciphers("DEFAULT:@SECLEVEL=0")  # let the client offer an old version; the broker must refuse it
        ctx.minimum_version = ctx.maximum_version = tls_version
    if identity is not None:
        ctx.load_cert_chain(str(identity.cert_file), str(identity.key_file))
    try:
        with socket.create_connection((broker.host, broker.port), timeout=timeout_s) as raw, \
                ctx.wrap_socket(raw, server_hostname=broker.host) as tls:
            tls.sendall(_connect_packet(f"probe-{time.monotonic_ns()}"))
            answer = b""
            while len(answer) < 4:
                chunk = tls.recv(4 - len(answer))
                if not chunk:
                    return "refused: the broker closed the connection"
                answer += chunk
    except ssl.SSLError as exc:
        return f"refused in TLS: {exc}"
    except OSError as exc:
        return f"refused: {exc}"
    if answer[0] != 0x20:
        return f"refused: unexpected packet {answer!r}"
    return "connected" if answer[3] == 0 else f"refused: CONNACK reason code {answer[3]}"


class DisconnectWatch:
    """A paho client connected with `identity` (its own client id): the moment the broker drops it marks a
    revocation's kick, which hits every connection of that identity."""

    def __init__(self, broker: BrokerAddress, identity: ClientIdentity, client_id: str = "revocation-watch") -> None:
        import paho.mqtt.client as paho
        from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion

        self._dropped = threading.Event()
        self.dropped_at = 0.0
        self.client = paho.Client(CallbackAPIVersion.VERSION2, client_id=client_id,
                                  protocol=MQTTProtocolVersion.MQTTv5)
        ctx = ssl.create_default_context(cafile=str(identity.ca_file))
        ctx.load_cert_chain(str(identity.cert_file), str(identity.key_file))
        self.client.tls_set_context(ctx)
        connected = threading.Event()
        self.client.on_connect = lambda *_: connected.set()
        self.client.on_disconnect = self._on_disconnect
        self.client.connect(broker.host, broker.port, keepalive=30)
        self.client.loop_start()
        if not connected.wait(10):
            raise TimeoutError(f"{identity.cert_file} could not connect to the broker")

    def _on_disconnect(self, *_: object) -> None:
        if not self._dropped.is_set():
            self.dropped_at = time.monotonic()
            self._dropped.set()

    def wait_disconnect(self, timeout_s: float) -> float:
        """When the connection was dropped (time.monotonic)."""
        if not self._dropped.wait(timeout_s):
            raise AssertionError("the connection was not dropped")
        return self.dropped_at

    def stop(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()
