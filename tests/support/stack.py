"""The whole system as real processes: Mosquitto, HQ, gateways, pty pairs (socat) and device
simulators. Used by the end-to-end tests, the benchmarks and `make demo`.

By default the stack runs the fleet's secure setup (docs/broker.md): mutual TLS with certificates from HQ's CA
(in <stack dir>/ca), the broker's ACL file, CRL and dynamic-security plugin. A gateway gets its certificate
straight from that CA, or with `GatewaySpec(enrol=True)` through the real `python -m gateway enrol` against HQ.
`Stack(tls=False)` runs plain MQTT on loopback.
"""

from __future__ import annotations

import os
import shutil
import signal
import ssl
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.support.mosquitto import BrokerTls, ClientIdentity, Mosquitto
from tests.support.netproxy import NetProxy
from tests.support.ports import free_port, wait_http_ok

REPO = Path(__file__).resolve().parents[2]
ADMIN = "admin"  # the stack's admin user; its password is tests.support.accounts.PASSWORD


@dataclass
class SimulatedDevice:
    device_id: str
    protocol: str  # "hl7" | "masimo"
    patient_id: str
    rate: float = 1.0
    transport: str = "serial"  # "serial" (a pty pair) | "tcp" (MLLP to the gateway's listener)
    seed: int = 1
    alarm_every_s: float | None = None
    extra_args: list[str] = field(default_factory=list)


@dataclass
class GatewaySpec:
    gateway_id: str
    clinic_id: str
    devices: list[SimulatedDevice]
    heartbeat_s: float = 5.0
    timezone: str = "UTC"
    keepalive_s: int = 10
    live_window_s: float = 60.0
    quota_bytes: int = 8 * 1024**3
    outbox_options: dict[str, int | float] = field(default_factory=dict)  # more [outbox] keys, e.g. batch_max_records
    broker_via: NetProxy | None = None  # reach the broker through this proxy (a WAN the test controls)
    env: dict[str, str] = field(default_factory=dict)  # extra environment, e.g. LD_PRELOAD=libfaketime
    extra_toml: str = ""  # more configuration, e.g. [media] settings and [[camera]] tables
    enrol: bool = False  # TLS: enrol through HQ with a one-time token (HQ must be running) instead of a direct issue


# An extra broker identity with HQ's read access, for tests that watch the traffic themselves.
OBSERVER_IDENTITY = "hq-observer"


class Stack:
    def __init__(self, workdir: Path | None = None, *, hq_port: int | None = None, db_url: str | None = None,
                 log_to_console: bool = False, tls: bool = True, hq_extra_config: str = "") -> None:
        self.dir = workdir or Path(tempfile.mkdtemp(prefix="clinic-stack-"))
        self.dir.mkdir(parents=True, exist_ok=True)
        self.hq_port = hq_port or free_port()
        self.db_url = db_url or f"sqlite:///{self.dir / 'hq.db'}"
        self.tls = tls
        self.ca_dir = self.dir / "ca"
        self.broker = Mosquitto(tls=BrokerTls(self.ca_dir, ("hq-1", OBSERVER_IDENTITY)) if tls else None)
        self.hq_identity = self.broker.issue_client("hq-1", self.dir) if tls else None
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        self.log_to_console = log_to_console
        self.gateway_configs: dict[str, Path] = {}
        self.tcp_ports: dict[str, int] = {}
        self.gateway_http_ports: dict[str, int] = {}
        self.gateway_env: dict[str, dict[str, str]] = {}
        self.proxies: list[NetProxy] = []
        self.admin_token: str | None = None  # API token of the admin user ADMIN, made at the first start of HQ
        self.hq_extra_config = hq_extra_config  # more TOML sections for HQ, e.g. "[scheduling]\nreminder_poll_s = 1\n"

    # ---- processes ------------------------------------------------------------------------
    def _spawn(self, name: str, args: list[str], env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
        out = None if self.log_to_console else open(self.dir / f"{name}.log", "ab")  # noqa: SIM115
        proc = subprocess.Popen(args, cwd=REPO, stdout=out, stderr=subprocess.STDOUT if out else None,
                                start_new_session=True, env={**os.environ, **env} if env else None)
        self.procs[name] = proc
        return proc

    def stop_process(self, name: str, sig: int = signal.SIGTERM, timeout_s: float = 15) -> None:
        proc = self.procs.pop(name, None)
        if proc is None or proc.poll() is not None:
            return
        proc.send_signal(sig)
        try:
            proc.wait(timeout_s)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)

    def log(self, name: str) -> str:
        path = self.dir / f"{name}.log"
        return path.read_text(errors="replace") if path.exists() else ""

    # ---- components -----------------------------------------------------------------------
    def start_broker(self) -> None:
        self.broker.start()

    def broker_proxy(self, **options: Any) -> NetProxy:
        """A started proxy to the broker (`options`: NetProxy's delay, loss, ...); pass it as
        GatewaySpec.broker_via. It lives until the stack stops."""
        proxy = NetProxy(self.broker.host, self.broker.port, **options).start()
        self.proxies.append(proxy)
        return proxy

    def hq_config_text(self, *, port: int | None = None, client_id: str = "hq-1") -> str:
        tls = ""
        if self.hq_identity is not None:
            tls = (f'ca_file = "{self.hq_identity.ca_file}"\ncert_file = "{self.hq_identity.cert_file}"\n'
                   f'key_file = "{self.hq_identity.key_file}"\ndynamic_security = true\n')
        return (
            f'[database]\nurl = "{self.db_url}"\n'
            f'[mqtt]\nhost = "{self.broker.host}"\nport = {self.broker.port}\nclient_id = "{client_id}"\n{tls}'
            f'[http]\nhost = "127.0.0.1"\nport = {port or self.hq_port}\n'
            "[replication]\nenabled = true\n"  # Litestream to <stack dir>/replica/hq.db (SQLite only)
            "[auth]\nsecure_cookies = false\n"  # the console is reached over plain http on loopback
            f'[ca]\ndir = "{self.ca_dir}"\n'
            f'[records]\nattachments_dir = "{self.dir / "attachments"}"\n'
            + self.hq_extra_config
        )

    def gateway_tls_paths(self, gateway_id: str) -> ClientIdentity:
        tls_dir = self.dir / gateway_id / "tls"
        return ClientIdentity(tls_dir / "ca.pem", tls_dir / "gateway.pem", tls_dir / "gateway.key")

    def observer_tls(self) -> ssl.SSLContext | None:
        """A TLS context for a test's own MQTT client with HQ's read access (None without TLS)."""
        if not self.tls:
            return None
        identity = self.broker.issue_client(OBSERVER_IDENTITY, self.dir)
        ctx = ssl.create_default_context(cafile=str(identity.ca_file))
        ctx.load_cert_chain(str(identity.cert_file), str(identity.key_file))
        return ctx

    def create_enrolment_token(self, gateway_id: str, clinic_id: str, **extra: Any) -> dict[str, Any]:
        """A token from HQ's API (HQ must be running)."""
        return self.hq_post("/api/v1/enrolment-tokens", {"gateway_id": gateway_id, "clinic_id": clinic_id, **extra})

    def enrol_gateway(self, gateway_id: str, token: str, *extra_args: str) -> subprocess.CompletedProcess[str]:
        """`python -m gateway enrol` with `token`, as the Ansible role runs it."""
        token_file = self.dir / f"{gateway_id}.token"
        token_file.write_text(token + "\n")
        return subprocess.run([sys.executable, "-m", "gateway", "enrol", "--config",
                               str(self.gateway_configs[gateway_id]), "--token-file", str(token_file), *extra_args],
                              cwd=REPO, capture_output=True, text=True, timeout=60, check=False)

    def _provide_identity(self, spec: GatewaySpec) -> None:
        paths = self.gateway_tls_paths(spec.gateway_id)
        if paths.cert_file.exists():
            return
        if not spec.enrol:
            self.broker.issue_client(spec.gateway_id, paths.cert_file.parent)
            for name, path in ((f"{spec.gateway_id}.pem", paths.cert_file), (f"{spec.gateway_id}.key", paths.key_file)):
                (paths.cert_file.parent / name).rename(path)
            shutil.copyfile(self.ca_dir / "ca.pem", paths.ca_file)
            return
        token = self.create_enrolment_token(spec.gateway_id, spec.clinic_id)["token"]
        done = self.enrol_gateway(spec.gateway_id, token)
        if done.returncode != 0:
            raise RuntimeError(f"enrolment of {spec.gateway_id} failed: {done.stderr.strip()}")

    def start_hq(self) -> None:
        path = self.dir / "hq.toml"
        path.write_text(self.hq_config_text())
        self._spawn("hq", [sys.executable, "-m", "hq", "serve", "--config", str(path)])
        wait_http_ok(f"http://127.0.0.1:{self.hq_port}/healthz", timeout_s=30)
        if self.admin_token is None:
            from tests.support import accounts

            accounts.add_user(self.db_url, ADMIN, "admin", display_name="Test Admin")
            self.admin_token = accounts.api_token(self.db_url, ADMIN)

    def start_hq_worker(self, n: int) -> str:
        """HQ worker number `n` (2, 3, ...) beside the one `start_hq` started, on the same database and broker:
        the scale path (PostgreSQL and several workers). Returns its URL."""
        port = free_port()
        path = self.dir / f"hq-{n}.toml"
        path.write_text(self.hq_config_text(port=port, client_id=f"hq-{n}"))
        self._spawn(f"hq-{n}", [sys.executable, "-m", "hq", "serve", "--config", str(path)])
        wait_http_ok(f"http://127.0.0.1:{port}/healthz", timeout_s=30)
        return f"http://127.0.0.1:{port}"

    @property
    def hq_url(self) -> str:
        return f"http://127.0.0.1:{self.hq_port}"

    def pty_pair(self, name: str) -> tuple[Path, Path]:
        """(gateway side, simulator side) of a socat pty pair."""
        a, b = self.dir / f"tty-{name}", self.dir / f"tty-{name}-sim"
        self._spawn(f"socat-{name}", ["socat", f"pty,raw,echo=0,link={a}", f"pty,raw,echo=0,link={b}"])
        deadline = time.monotonic() + 10
        while not (a.exists() and b.exists()):
            if time.monotonic() > deadline:
                raise TimeoutError(f"socat did not create {a} and {b}")
            time.sleep(0.02)
        return a, b

    def gateway_config_text(self, spec: GatewaySpec, ports: dict[str, str]) -> str:
        via = spec.broker_via
        broker_host, broker_port = (via.host, via.port) if via else (self.broker.host, self.broker.port)
        tls = ""
        if self.tls:
            paths = self.gateway_tls_paths(spec.gateway_id)
            tls = f'ca_file = "{paths.ca_file}"\ncert_file = "{paths.cert_file}"\nkey_file = "{paths.key_file}"\n'
        lines = [
            f'[gateway]\nid = "{spec.gateway_id}"\nclinic_id = "{spec.clinic_id}"\n'
            f'data_dir = "{self.dir / spec.gateway_id}"\ntimezone = "{spec.timezone}"\n',
            f'[mqtt]\nhost = "{broker_host}"\nport = {broker_port}\nkeepalive_s = {spec.keepalive_s}\n{tls}',
            f'[enrolment]\nhq_url = "{self.hq_url}"\ntimeout_s = 10\n',
            f"[status]\nheartbeat_s = {spec.heartbeat_s}\n",
            f"[outbox]\nlive_window_s = {spec.live_window_s}\nquota_bytes = {spec.quota_bytes}\n"
            + "".join(f"{key} = {value}\n" for key, value in spec.outbox_options.items()),
            f"[http]\nport = {self.gateway_http_ports.setdefault(spec.gateway_id, free_port())}\n",
            "[replication]\nenabled = true\n",  # Litestream to <stack dir>/<gateway id>/replica/outbox.db
        ]
        for dev in spec.devices:
            if dev.transport == "serial":
                lines.append(f'[[serial]]\nport = "{ports[dev.device_id]}"\nprotocol = "{dev.protocol}"\n'
                             f'device_id = "{dev.device_id}"\npatient_id = "{dev.patient_id}"\n')
            else:
                port = self.tcp_ports.setdefault(f"{spec.gateway_id}/{dev.device_id}", free_port())
                lines.append(f'[[tcp]]\nhost = "127.0.0.1"\nport = {port}\nprotocol = "{dev.protocol}"\n'
                             f'device_id = "{dev.device_id}"\n')
        lines.append(spec.extra_toml)
        return "\n".join(lines)

    def start_gateway(self, spec: GatewaySpec, *, start_simulators: bool = True) -> dict[str, str]:
        """Starts the gateway (and its devices' simulators); returns each device's simulator-side port."""
        ports: dict[str, str] = {}
        sim_ports: dict[str, str] = {}
        for dev in spec.devices:
            if dev.transport == "serial":
                gw_side, sim_side = self.pty_pair(f"{spec.gateway_id}-{dev.device_id}")
                ports[dev.device_id], sim_ports[dev.device_id] = str(gw_side), str(sim_side)
        self.write_gateway_config(spec, ports)
        if self.tls:
            self._provide_identity(spec)
        self.restart_gateway(spec.gateway_id)
        if start_simulators:
            time.sleep(0.5)  # the gateway must have the port open first: bytes written before are lost
            for dev in spec.devices:
                target = sim_ports.get(dev.device_id) or \
                    f"tcp://127.0.0.1:{self.tcp_ports[f'{spec.gateway_id}/{dev.device_id}']}"
                self.start_simulator(f"sim-{spec.gateway_id}-{dev.device_id}", dev, target)
        for dev in spec.devices:
            sim_ports.setdefault(dev.device_id,
                                 f"tcp://127.0.0.1:{self.tcp_ports.get(f'{spec.gateway_id}/{dev.device_id}')}")
        return sim_ports

    def write_gateway_config(self, spec: GatewaySpec, ports: dict[str, str] | None = None) -> Path:
        """The gateway's TOML file (`ports`: its serial devices' pty paths), without starting anything."""
        path = self.dir / f"{spec.gateway_id}.toml"
        path.write_text(self.gateway_config_text(spec, ports or {}))
        self.gateway_configs[spec.gateway_id] = path
        self.gateway_env[spec.gateway_id] = spec.env
        return path

    def restart_gateway(self, gateway_id: str) -> None:
        self._spawn(f"gw-{gateway_id}", [sys.executable, "-m", "gateway", "--config",
                                         str(self.gateway_configs[gateway_id])], self.gateway_env.get(gateway_id))
        wait_http_ok(f"http://127.0.0.1:{self.gateway_http_ports[gateway_id]}/healthz", timeout_s=30)

    def start_simulator(self, name: str, dev: SimulatedDevice, target: str, count: int | None = None) -> None:
        args = [sys.executable, "-m", "devices", "simulate", "--protocol", dev.protocol, "--port", target,
                "--rate", str(dev.rate), "--seed", str(dev.seed), "--patient-id", dev.patient_id,
                "--device-id", dev.device_id, *dev.extra_args]
        if dev.alarm_every_s:
            args += ["--alarm-every", str(dev.alarm_every_s)]
        if count is not None:
            args += ["--count", str(count)]
        self._spawn(name, args)

    # ---- backup and restore ---------------------------------------------------------------
    def restore_hq(self, *, force: bool = False, timestamp: str | None = None) -> str:
        """`python -m hq restore` from HQ's Litestream replica (HQ must be stopped); returns what it printed."""
        args = [sys.executable, "-m", "hq", "restore", "--config", str(self.dir / "hq.toml")]
        return self._restore("hq", args + (["--timestamp", timestamp] if timestamp else []), force)

    def restore_gateway(self, gateway_id: str, *, force: bool = False) -> str:
        """`python -m gateway restore` of the gateway's outbox (the gateway must be stopped)."""
        return self._restore(f"gw-{gateway_id}", [sys.executable, "-m", "gateway", "restore", "--config",
                                                  str(self.gateway_configs[gateway_id])], force)

    def _restore(self, name: str, args: list[str], force: bool) -> str:
        proc = self.procs.get(name)
        if proc is not None and proc.poll() is None:
            raise RuntimeError(f"stop {name} before restoring its database")
        done = subprocess.run([*args, *(["--force"] if force else [])], cwd=REPO, capture_output=True, text=True,
                              timeout=120, check=False)
        if done.returncode != 0:
            raise RuntimeError(f"restore of {name} failed ({done.returncode}): {done.stderr.strip() or done.stdout}")
        return done.stdout

    def gateway_status(self, gateway_id: str) -> dict[str, object]:
        """The gateway's own view (outbox backlog, devices) from its local API."""
        import json
        import urllib.request

        url = f"http://127.0.0.1:{self.gateway_http_ports[gateway_id]}/api/v1/status"
        with urllib.request.urlopen(url, timeout=5) as resp:
            return dict(json.load(resp))

    def gateway_url(self, gateway_id: str) -> str:
        """The gateway's local API and staff screen."""
        return f"http://127.0.0.1:{self.gateway_http_ports[gateway_id]}"

    def hq_get(self, path: str, token: str | None = None) -> dict[str, object]:
        """GET a JSON API path as the stack's admin (or the holder of `token`)."""
        import json
        import urllib.request

        request = urllib.request.Request(self.hq_url + path,
                                         headers={"Authorization": f"Bearer {token or self.admin_token}"})
        with urllib.request.urlopen(request, timeout=10) as resp:
            return dict(json.load(resp))

    def hq_post(self, path: str, body: dict[str, Any] | None = None, method: str = "POST",
                token: str | None = None) -> dict[str, Any]:
        """POST (or PUT, ...) JSON to an API path as the stack's admin (or the holder of `token`)."""
        import json
        import urllib.request

        request = urllib.request.Request(self.hq_url + path, data=json.dumps(body or {}).encode(), method=method,
                                         headers={"Content-Type": "application/json",
                                                  "Authorization": f"Bearer {token or self.admin_token}"})
        with urllib.request.urlopen(request, timeout=20) as resp:
            return dict(json.load(resp))

    def hq_page(self, path: str) -> str:
        """A console page's HTML as the stack's admin."""
        import urllib.request

        request = urllib.request.Request(self.hq_url + path, headers={"Authorization": f"Bearer {self.admin_token}"})
        with urllib.request.urlopen(request, timeout=10) as resp:
            return str(resp.read().decode())

    # ---- teardown -------------------------------------------------------------------------
    def stop(self) -> None:
        # Devices first, then gateways (they publish their offline status), HQ, and the ptys last.
        rank = {"sim-": 0, "gw-": 1, "hq": 2, "socat-": 3}  # "hq" also ranks the extra workers ("hq-2", ...)
        for name in sorted(self.procs, key=lambda n: next((r for p, r in rank.items() if n.startswith(p)), 4)):
            self.stop_process(name)
        for proxy in self.proxies:
            proxy.stop()
        self.proxies.clear()
        self.broker.stop()

    def cleanup(self) -> None:
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)
        shutil.rmtree(self.broker.dir, ignore_errors=True)

    def __enter__(self) -> Stack:
        return self

    def __exit__(self, *exc: object) -> None:
        self.cleanup()


def demo_topology() -> list[GatewaySpec]:
    """Two clinics, each with an HL7 monitor on a serial port, a Masimo oximeter, and an HL7 LAN monitor."""
    return [
        GatewaySpec("gw-north-1", "clinic-north", [
            SimulatedDevice("monitor-bed1", "hl7", "P-N-0001", rate=1.0, seed=11, alarm_every_s=90),
            SimulatedDevice("oximeter-bed2", "masimo", "P-N-0002", rate=1.0, seed=12),
            SimulatedDevice("lan-monitors", "hl7", "P-N-0003", rate=0.5, transport="tcp", seed=13),
        ]),
        GatewaySpec("gw-south-1", "clinic-south", [
            SimulatedDevice("monitor-bed1", "hl7", "P-S-0001", rate=1.0, seed=21, alarm_every_s=120),
            SimulatedDevice("oximeter-bed1", "masimo", "P-S-0002", rate=1.0, seed=22),
        ]),
    ]


if __name__ == "__main__":  # pragma: no cover - manual use
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
