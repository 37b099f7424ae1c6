"""Runs inside the provisioned HQ while it boots under systemd-nspawn (test_provision.py copies it there): drives
the deployed HQ and broker as a coordinator and a gateway would, records what it saw in /root/probe/result.json,
and powers the container off.

Not a test by itself: the test reads the record once the container has stopped. It runs as root with HQ's venv
Python, and imports the project's broker probes (tests.support, copied beside it) and HQ's CA code (the venv).
"""

from __future__ import annotations

import json
import pwd
import subprocess
import sys
import time
import traceback
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

PROBE = Path("/root/probe")
sys.path.insert(0, str(PROBE))

from tests.support.mosquitto import ClientIdentity, DisconnectWatch, probe_connect_at  # noqa: E402

BIN = Path("/opt/clinic-edge/current/bin")
CONFIG = "/etc/clinic-hq/hq.toml"
HQ_URL = "http://127.0.0.1:8080"
GATEWAY_ID, CLINIC_ID = "gw-probe-1", "clinic-probe"


@dataclass(frozen=True)
class Broker:
    host: str
    port: int


BROKER = Broker("127.0.0.1", 8883)


def run(*args: str, user: str | None = None, timeout_s: float = 60) -> subprocess.CompletedProcess[str]:
    command = ["runuser", "-u", user, "--", *args] if user else list(args)
    return subprocess.run(command, capture_output=True, text=True, timeout=timeout_s, check=False, cwd="/")


def show(unit: str, *props: str) -> dict[str, str]:
    out = run("systemctl", "show", "-p", ",".join(props), unit).stdout
    return dict(line.split("=", 1) for line in out.splitlines() if "=" in line)


def wait_for(what: str, check: Callable[[], bool], timeout_s: float = 90) -> float:
    """Seconds it took until `check()` held; AssertionError naming `what` after `timeout_s`."""
    started = time.monotonic()
    while not check():
        if time.monotonic() - started > timeout_s:
            raise AssertionError(f"{what}: not within {timeout_s} s")
        time.sleep(0.2)
    return time.monotonic() - started


def http_ok(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as resp:
            return resp.status == 200
    except (urllib.error.URLError, OSError):
        return False


def api(path: str, token: str, body: dict[str, Any]) -> dict[str, Any]:
    request = urllib.request.Request(HQ_URL + path, data=json.dumps(body).encode(), method="POST",
                                     headers={"Content-Type": "application/json", "Authorization": f"Bearer {token}"})
    with urllib.request.urlopen(request, timeout=30) as resp:
        return dict(json.load(resp))


def readable_by(user: str, path: str) -> bool:
    return run("head", "-c", "1", path, user=user).returncode == 0


def coordinator_token() -> str:
    """A coordinator's API token, made with HQ's own command line as HQ's user (as an operator would)."""
    hq = str(BIN / "clinic-hq")
    added = run(hq, "user", "add", "--config", CONFIG, "--username", "probe", "--role", "coordinator",
                user="clinic-hq")
    assert added.returncode == 0, added.stderr
    made = run(hq, "token", "create", "--config", CONFIG, "--username", "probe", "--name", "probe", user="clinic-hq")
    assert made.returncode == 0, made.stderr
    return made.stdout.strip().splitlines()[-1]


def enrol_gateway(token: str) -> ClientIdentity:
    """A gateway's certificate from the deployed CA, the real way: a one-time token and `clinic-gateway enrol`."""
    issued = api("/api/v1/enrolment-tokens", token, {"gateway_id": GATEWAY_ID, "clinic_id": CLINIC_ID})
    home = PROBE / "gateway"
    identity = ClientIdentity(home / "ca.pem", home / "gateway.pem", home / "gateway.key")
    home.mkdir(parents=True, exist_ok=True)
    (home / "token").write_text(issued["token"] + "\n")
    (home / "gateway.toml").write_text(
        f'[gateway]\nid = "{GATEWAY_ID}"\nclinic_id = "{CLINIC_ID}"\ndata_dir = "{home}"\n'
        f'[mqtt]\nhost = "{BROKER.host}"\nport = {BROKER.port}\nca_file = "{identity.ca_file}"\n'
        f'cert_file = "{identity.cert_file}"\nkey_file = "{identity.key_file}"\n'
        f'[enrolment]\nhq_url = "{HQ_URL}"\n')
    done = run(str(BIN / "clinic-gateway"), "enrol", "--config", str(home / "gateway.toml"),
               "--token-file", str(home / "token"))
    assert done.returncode == 0, done.stdout + done.stderr
    return identity


def foreign_identity() -> ClientIdentity:
    """The same gateway id, certified by a CA the broker does not know."""
    from hq import ca

    now = datetime.now(UTC)
    home = PROBE / "foreign"
    home.mkdir(parents=True, exist_ok=True)
    authority = ca.new_authority("Some other CA", now=now, validity_days=30)
    key, cert = ca.issue_identity(authority, GATEWAY_ID, now=now, validity_days=10)
    key_path, cert_path = ca.write_identity(home, GATEWAY_ID, key, cert)
    return ClientIdentity(home / "unused-ca.pem", cert_path, key_path)


def probe(result: dict[str, Any]) -> None:
    result["started_s"] = wait_for("mosquitto and HQ active", lambda: all(
        show(u, "ActiveState")["ActiveState"] == "active" for u in ("mosquitto.service", "clinic-hq.service")))
    # /healthz is 200 only while HQ is connected to the broker (with its certificate, over TLS).
    result["hq_healthy_s"] = wait_for("HQ healthy", lambda: http_ok(HQ_URL + "/healthz"))
    pid = show("mosquitto.service", "MainPID")["MainPID"]
    uid = next(int(line.split()[1]) for line in Path(f"/proc/{pid}/status").read_text().splitlines()
               if line.startswith("Uid:"))
    result["broker_user"] = pwd.getpwuid(uid).pw_name
    result["readable"] = {f"{user} {path}": readable_by(user, path) for user, path in (
        ("mosquitto", "/var/lib/clinic-hq-crl/crl.pem"), ("mosquitto", "/etc/mosquitto/clinic/ca.pem"),
        ("mosquitto", "/etc/mosquitto/clinic/broker.key"), ("mosquitto", "/var/lib/clinic-hq/ca/ca.key"),
        ("clinic-hq", "/var/lib/clinic-hq/ca/ca.key"), ("clinic-hq", "/etc/clinic-hq/tls/hq-1.key"),
        ("clinic-hq", "/etc/mosquitto/clinic/broker.key"), ("nobody", "/etc/clinic-hq/tls/hq-1.key"))}

    token = coordinator_token()
    gateway = enrol_gateway(token)
    result["gateway_connects"] = probe_connect_at(BROKER, gateway.ca_file, gateway)
    result["foreign_connects"] = probe_connect_at(BROKER, gateway.ca_file, foreign_identity())

    watch = DisconnectWatch(BROKER, gateway, client_id=GATEWAY_ID)
    before = show("clinic-broker-crl.service", "InvocationID")["InvocationID"]
    crl_before = Path("/var/lib/clinic-hq-crl/crl.pem").read_bytes()
    started = time.monotonic()
    result["revocation"] = api(f"/api/v1/gateways/{GATEWAY_ID}/revoke", token, {"reason": "deployment test"})
    try:
        result["kicked_ms"] = round((watch.wait_disconnect(10) - started) * 1000)
    finally:
        watch.stop()
    result["crl_rewritten"] = Path("/var/lib/clinic-hq-crl/crl.pem").read_bytes() != crl_before
    result["reload_unit_ran_s"] = wait_for("clinic-broker-crl.service started by its path unit", lambda: show(
        "clinic-broker-crl.service", "InvocationID")["InvocationID"] not in ("", before), timeout_s=20)
    result["reload_unit"] = show("clinic-broker-crl.service", "Result", "ExecMainStatus", "ActiveState")
    outcome = ""

    def refused() -> bool:
        nonlocal outcome
        outcome = probe_connect_at(BROKER, gateway.ca_file, gateway)
        return outcome.startswith("refused in TLS")

    try:
        result["revoked_refused_s"] = wait_for("the revoked certificate refused in the handshake", refused,
                                               timeout_s=20)
    finally:
        result["revoked_connects"] = outcome
    result["hq_healthy_after_reload"] = http_ok(HQ_URL + "/healthz")
    result["broker_after_reload"] = show("mosquitto.service", "ActiveState", "NRestarts", "MainPID")
    result["broker_same_process"] = result["broker_after_reload"]["MainPID"] == pid


def main() -> None:
    result: dict[str, Any] = {}
    try:
        probe(result)
    except Exception:
        result["error"] = traceback.format_exc()
    finally:
        journal = run("journalctl", "--no-pager", "-o", "short-monotonic", "-u", "mosquitto.service",
                      "-u", "clinic-hq.service", "-u", "clinic-broker-crl.service", "-u", "clinic-broker-crl.path")
        (PROBE / "journal.txt").write_text(journal.stdout + journal.stderr)
        (PROBE / "result.json").write_text(json.dumps(result, indent=1))
        run("systemctl", "poweroff", "--no-block")


if __name__ == "__main__":
    main()
