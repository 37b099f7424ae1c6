"""`make demo`: the whole system on this machine with simulated devices, until Ctrl-C.

Mosquitto on a free local port, HQ with SQLite serving the console on http://127.0.0.1:8080 (or $DEMO_PORT),
two gateways (two clinics) with HL7 and Masimo monitors on pseudo-terminals and one HL7 monitor over TCP.
Logs and databases go to run/demo/ in the repository.
"""

from __future__ import annotations

import os
import shutil
import signal
import sys
import time
from pathlib import Path

from tests.support.accounts import PASSWORD
from tests.support.ports import free_port
from tests.support.stack import ADMIN, REPO, Stack, demo_topology


def port_is_free(port: int) -> bool:
    import socket

    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def main() -> int:
    port = int(os.environ.get("DEMO_PORT", "8080"))
    if not port_is_free(port):
        alternative = free_port()
        print(f"port {port} is taken; using {alternative} (set DEMO_PORT to choose)")
        port = alternative
    workdir = REPO / "run" / "demo"
    shutil.rmtree(workdir, ignore_errors=True)
    stack = Stack(Path(workdir), hq_port=port)
    stopping = False

    def stop(signum: int, _frame: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGTERM, stop)
    try:
        print("starting Mosquitto ...", flush=True)
        stack.start_broker()
        print("starting HQ ...", flush=True)
        stack.start_hq()
        for spec in demo_topology():
            print(f"starting gateway {spec.gateway_id} ({spec.clinic_id}) with "
                  f"{', '.join(d.device_id + ' [' + d.protocol + ']' for d in spec.devices)} ...", flush=True)
            stack.start_gateway(spec)
        print()
        print(f"  Console:  http://127.0.0.1:{port}/   (log in as {ADMIN} / {PASSWORD})")
        print(f"  API:      curl -H 'Authorization: Bearer {stack.admin_token}' http://127.0.0.1:{port}/api/v1/gateways")
        broker = stack.broker.port
        if stack.tls:
            watch = stack.broker.issue_client("hq-observer", Path(workdir))
            print(f"  Broker:   mqtts://127.0.0.1:{broker}  (mutual TLS; watch: mosquitto_sub -p {broker} "
                  f"--cafile {watch.ca_file} --cert {watch.cert_file} --key {watch.key_file} -t 'clinic/#' -v)")
        else:
            print(f"  Broker:   mqtt://127.0.0.1:{broker}  (watch: mosquitto_sub -p {broker} -t 'clinic/#' -v)")
        print(f"  Logs:     {workdir}/")
        print()
        print("Press Ctrl-C to stop.", flush=True)
        while not stopping:
            time.sleep(0.5)
            dead = [n for n, p in stack.procs.items() if p.poll() is not None]
            if dead:
                print(f"stopped unexpectedly: {', '.join(dead)}; see {workdir}/<name>.log", file=sys.stderr)
                return 1
        return 0
    finally:
        print("\nstopping ...", flush=True)
        stack.stop()
        print("stopped.")


if __name__ == "__main__":
    sys.exit(main())
