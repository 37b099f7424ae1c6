"""Fleet security timings on the secure stack (real Mosquitto with mutual TLS, HQ with its CA and the broker's
dynamic-security plugin): how fast a revoked gateway is dropped and then refused, and what enrolment and a TLS
connection cost.

Each round enrols an identity through HQ's API (a real token and CSR), connects a client with it, and revokes it
through the API; the times run from the revocation request. Prints: enrolment_command_ms (the real `python -m
gateway enrol`, process start included), tls_connect_ms (handshake + CONNACK), revocation_api_ms,
revocation_disconnect_ms and revocation_handshake_refused_ms (median and worst of ROUNDS).
"""

from __future__ import annotations

import statistics
import time
from pathlib import Path

from cryptography.hazmat.primitives import serialization

from gateway.tls_identity import build_csr, generate_key, key_pem
from tests.support.mosquitto import ClientIdentity, DisconnectWatch, probe_connect
from tests.support.stack import GatewaySpec, Stack

ROUNDS = 7


def enrol_in_process(stack: Stack, gateway_id: str, directory: Path) -> ClientIdentity:
    """A token and a CSR through HQ's API, as `python -m gateway enrol` does, without its process start."""
    token = stack.create_enrolment_token(gateway_id, "bench-clinic")["token"]
    key = generate_key()
    csr = build_csr(key, gateway_id).public_bytes(serialization.Encoding.PEM).decode()
    done = stack.hq_post("/api/v1/enrolment", {"token": token, "csr": csr})
    directory.mkdir(parents=True, exist_ok=True)
    paths = ClientIdentity(directory / "ca.pem", directory / "gateway.pem", directory / "gateway.key")
    paths.key_file.write_bytes(key_pem(key))
    paths.cert_file.write_text(done["certificate_chain"])
    paths.ca_file.write_text(done["ca_bundle"])
    return paths


def report(name: str, values: list[float]) -> None:
    print(f"{name}_p50: {statistics.median(values):.1f} ms")
    print(f"{name}_max: {max(values):.1f} ms")


def main() -> None:
    api, dropped, refused, connect, command = [], [], [], [], []
    with Stack() as stack:
        stack.start_broker()
        stack.start_hq()
        for i in range(3):
            stack.write_gateway_config(GatewaySpec(f"bench-enrol-{i}", "bench-clinic", []))
            token = stack.create_enrolment_token(f"bench-enrol-{i}", "bench-clinic")["token"]
            started = time.monotonic()
            done = stack.enrol_gateway(f"bench-enrol-{i}", token)
            command.append((time.monotonic() - started) * 1000)
            if done.returncode != 0:
                raise RuntimeError(done.stderr)
        for i in range(ROUNDS):
            identity = enrol_in_process(stack, f"bench-gw-{i}", stack.dir / f"bench-gw-{i}")
            started = time.monotonic()
            if probe_connect(stack.broker, identity) != "connected":
                raise RuntimeError("a fresh identity was refused")
            connect.append((time.monotonic() - started) * 1000)
            watch = DisconnectWatch(stack.broker, identity)
            try:
                started = time.monotonic()
                outcome = stack.hq_post(f"/api/v1/gateways/bench-gw-{i}/revoke", {"reason": "benchmark"})
                api.append((time.monotonic() - started) * 1000)
                if outcome["broker"]["state"] != "applied":
                    raise RuntimeError(f"the broker did not confirm: {outcome['broker']}")
                dropped.append((watch.wait_disconnect(5) - started) * 1000)
                while probe_connect(stack.broker, identity) == "connected":
                    time.sleep(0.005)
                refused.append((time.monotonic() - started) * 1000)
            finally:
                watch.stop()
    report("enrolment_command", command)
    report("tls_connect", connect)
    report("revocation_api", api)
    report("revocation_disconnect", dropped)
    report("revocation_handshake_refused", refused)


if __name__ == "__main__":
    main()
