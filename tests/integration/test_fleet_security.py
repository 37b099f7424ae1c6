"""Gateway identities end to end, as real processes: a gateway enrols with a one-time token (`python -m gateway
enrol`), connects over mutual TLS and its readings reach HQ; refused tokens say why; a revoked gateway is dropped
and refused at once; a gateway with another CA's certificate never gets in."""

from __future__ import annotations

import datetime as dt
import sqlite3
import stat
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509

from hq import ca
from tests.support.mosquitto import ClientIdentity, DisconnectWatch, probe_connect
from tests.support.ports import eventually, free_port
from tests.support.stack import GatewaySpec, SimulatedDevice, Stack


@pytest.fixture
def stack() -> Iterator[Stack]:
    with Stack() as s:
        s.start_broker()
        s.start_hq()
        yield s


def gateway(stack: Stack, gateway_id: str) -> dict[str, Any]:
    gateways: list[dict[str, Any]] = stack.hq_get("/api/v1/gateways")["gateways"]
    found = [g for g in gateways if g["gateway_id"] == gateway_id]
    return found[0] if found else {}


def readings_at_hq(stack: Stack, gateway_id: str) -> int:
    conn = sqlite3.connect(stack.db_url.removeprefix("sqlite:///"))
    try:
        return int(conn.execute("SELECT count(*) FROM observations WHERE gateway_id = ? AND kind = 'observation'",
                                (gateway_id,)).fetchone()[0])
    finally:
        conn.close()


def oximeter(seed: int) -> SimulatedDevice:
    return SimulatedDevice(f"oxi-{seed}", "masimo", f"P-{seed:04d}", rate=5, seed=seed)


def test_a_gateway_enrols_with_its_token_and_its_readings_reach_hq_over_mutual_tls(stack: Stack) -> None:
    stack.start_gateway(GatewaySpec("gw-enrolled", "clinic-e", [oximeter(1)], heartbeat_s=1, enrol=True))
    eventually(lambda: readings_at_hq(stack, "gw-enrolled") > 10, what="readings at HQ")
    paths = stack.gateway_tls_paths("gw-enrolled")
    assert stat.S_IMODE(paths.key_file.stat().st_mode) == 0o600
    cert = x509.load_pem_x509_certificate(paths.cert_file.read_bytes())
    assert ca.common_name(cert.subject) == "gw-enrolled"
    assert ca.issued_by(cert, x509.load_pem_x509_certificate((stack.ca_dir / "ca.pem").read_bytes()))
    identity = eventually(lambda: gateway(stack, "gw-enrolled").get("identity"), what="identity at HQ")
    assert identity["serial"] == ca.serial_hex(cert.serial_number) and identity["revoked"] is None
    assert identity["certificate_expires"].startswith(f"{cert.not_valid_after_utc:%Y-%m-%dT%H:%M}")
    assert identity["last_enrolment"] is not None
    # The Ansible role's contract: with a valid certificate in place the command does nothing and exits 0, even
    # with a token that was already used.
    before = {p: p.read_bytes() for p in (paths.key_file, paths.cert_file, paths.ca_file)}
    again = stack.enrol_gateway("gw-enrolled", "cgw1_spent-or-anything")
    assert again.returncode == 0 and "already enrolled" in again.stdout, again.stderr
    assert {p: p.read_bytes() for p in before} == before

    # Renewal: enrolment again with a new token. HQ revokes the old certificate as superseded (the broker then
    # refuses it), and the gateway carries on with the new one after a restart.
    old_identity = ClientIdentity(paths.ca_file, stack.dir / "old.pem", stack.dir / "old.key")
    old_identity.cert_file.write_bytes(before[paths.cert_file])
    old_identity.key_file.write_bytes(before[paths.key_file])
    renewed = stack.enrol_gateway("gw-enrolled", stack.create_enrolment_token("gw-enrolled", "clinic-e")["token"],
                                  "--renew")
    assert renewed.returncode == 0 and "enrolled" in renewed.stdout, renewed.stderr
    new_cert = x509.load_pem_x509_certificate(paths.cert_file.read_bytes())
    assert new_cert.serial_number != cert.serial_number
    assert eventually(lambda: probe_connect(stack.broker, old_identity) != "connected", timeout_s=10,
                      what="the superseded certificate refused")
    stack.stop_process("gw-gw-enrolled")
    stack.restart_gateway("gw-enrolled")
    count = readings_at_hq(stack, "gw-enrolled")
    eventually(lambda: readings_at_hq(stack, "gw-enrolled") > count + 5, what="readings with the new certificate")
    assert gateway(stack, "gw-enrolled")["identity"]["serial"] == ca.serial_hex(new_cert.serial_number)


def probe_gateway(stack: Stack, gateway_id: str) -> Path:
    """A gateway's configuration without starting it: what `enrol` reads."""
    return stack.write_gateway_config(GatewaySpec(gateway_id, "clinic-e", []))


def expire(stack: Stack, token: str) -> None:
    from hq.enrolment import hash_token

    conn = sqlite3.connect(stack.db_url.removeprefix("sqlite:///"))
    try:
        with conn:
            conn.execute("UPDATE enrolment_tokens SET expires_ms = 1 WHERE token_hash = ?", (hash_token(token),))
    finally:
        conn.close()


def test_refused_enrolments_say_why_and_leave_nothing_behind(stack: Stack, tmp_path: Path) -> None:
    probe_gateway(stack, "gw-new")
    paths = stack.gateway_tls_paths("gw-new")
    used = stack.create_enrolment_token("gw-other", "clinic-e")["token"]
    probe_gateway(stack, "gw-other")
    assert stack.enrol_gateway("gw-other", used).returncode == 0
    expired = stack.create_enrolment_token("gw-new", "clinic-e")["token"]
    expire(stack, expired)
    foreign = stack.create_enrolment_token("gw-third", "clinic-e")["token"]
    for token, needle in ((used, "(used, field token)"), ("cgw1_never-issued", "(unknown, field token)"),
                          (expired, "(expired, field token)"), (foreign, "(cn_mismatch, field csr)")):
        done = stack.enrol_gateway("gw-new", token)
        assert done.returncode == 1, done.stdout
        assert "HQ refused the enrolment" in done.stderr and needle in done.stderr, done.stderr
        assert "Traceback" not in done.stderr and done.stderr.count("\n") == 1
        assert not paths.cert_file.exists() and not paths.key_file.exists()
    # HQ unreachable: the command says so; the token is not spent.
    good = stack.create_enrolment_token("gw-new", "clinic-e")["token"]
    config = stack.gateway_configs["gw-new"]
    text = config.read_text()
    config.write_text(text.replace(stack.hq_url, f"http://127.0.0.1:{free_port()}"))
    done = stack.enrol_gateway("gw-new", good)
    assert done.returncode == 1 and "HQ is unreachable" in done.stderr and "token was not used" in done.stderr
    # An unwritable certificate path: found before the token goes to HQ.
    blocked = tmp_path / "not-a-directory"
    blocked.write_text("")
    config.write_text(text.replace(str(paths.cert_file), str(blocked / "gateway.pem")))
    done = stack.enrol_gateway("gw-new", good)
    assert done.returncode == 1 and f"cannot write {blocked / 'gateway.pem'}" in done.stderr, done.stderr
    config.write_text(text)
    done = stack.enrol_gateway("gw-new", good)  # the same token still works: nothing above spent it
    assert done.returncode == 0 and "enrolled" in done.stdout, done.stderr


def test_a_revoked_gateway_is_dropped_and_refused_at_once(stack: Stack) -> None:
    stack.start_gateway(GatewaySpec("gw-doomed", "clinic-r", [oximeter(2)], heartbeat_s=1, enrol=True))
    stack.start_gateway(GatewaySpec("gw-kept", "clinic-r", [oximeter(3)], heartbeat_s=1, enrol=True))
    eventually(lambda: readings_at_hq(stack, "gw-doomed") > 5 and readings_at_hq(stack, "gw-kept") > 5,
               what="both gateways' readings at HQ")
    doomed = stack.gateway_tls_paths("gw-doomed")
    # A second client with the doomed gateway's certificate: it sees the kick the moment the broker does it.
    watcher = DisconnectWatch(stack.broker, doomed)
    try:
        started = time.monotonic()
        outcome = stack.hq_post("/api/v1/gateways/gw-doomed/revoke", {"reason": "stolen"})
        answered = time.monotonic()
        assert outcome["broker"]["state"] == "applied", outcome
        assert outcome["crl"] == {"written": True} and len(outcome["certificates_revoked"]) == 1
        kicked = watcher.wait_disconnect(5)
        while probe_connect(stack.broker, doomed) == "connected" and time.monotonic() - started < 10:
            time.sleep(0.01)
        refused_at = time.monotonic()
    finally:
        watcher.stop()
    print(f"revocation: API answered after {(answered - started) * 1000:.0f} ms, connection dropped after "
          f"{(kicked - started) * 1000:.0f} ms, new handshakes refused after {(refused_at - started) * 1000:.0f} ms")
    assert kicked - started < 2.0 and refused_at - started < 5.0
    # Nothing more of it reaches HQ, while the other gateway carries on.
    time.sleep(2)
    doomed_count, kept_count = readings_at_hq(stack, "gw-doomed"), readings_at_hq(stack, "gw-kept")
    time.sleep(3)
    assert readings_at_hq(stack, "gw-doomed") == doomed_count
    assert readings_at_hq(stack, "gw-kept") > kept_count
    assert gateway(stack, "gw-doomed")["identity"]["revoked"] is not None
    assert "gw-doomed revoked by user:admin" in stack.log("hq")
    status = stack.gateway_status("gw-doomed")
    assert status["connected"] is False  # its reconnects fail in the handshake



def test_a_gateway_with_another_cas_certificate_never_gets_in(stack: Stack, tmp_path: Path) -> None:
    other = ca.CaFiles(tmp_path / "other-ca")
    authority = other.create("A stranger's CA", now=dt.datetime.now(dt.UTC), validity_days=365)
    key, cert = ca.issue_identity(authority, "gw-impostor", now=dt.datetime.now(dt.UTC), validity_days=30)
    paths = stack.gateway_tls_paths("gw-impostor")
    paths.cert_file.parent.mkdir(parents=True)
    ca.write_identity(paths.cert_file.parent, "gateway", key, cert)
    paths.ca_file.write_bytes((stack.ca_dir / "ca.pem").read_bytes())  # it does trust the real broker
    stack.start_gateway(GatewaySpec("gw-impostor", "clinic-x", [oximeter(4)], heartbeat_s=1))
    time.sleep(5)
    assert stack.gateway_status("gw-impostor")["connected"] is False
    assert gateway(stack, "gw-impostor") == {}
    assert "certificate verify failed" in stack.broker.log()
