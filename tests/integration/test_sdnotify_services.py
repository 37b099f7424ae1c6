"""The real services under a stand-in for systemd's notify socket: READY when they can do their job,
WATCHDOG while they are healthy (not while frozen or after capture died), STOPPING on SIGTERM; and the
standalone Litestream replicator (`replicate`, [replication] mode = "external").
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.mosquitto import Mosquitto
from tests.support.notify_socket import NotifySocket
from tests.support.ports import eventually, free_port, wait_http_ok

REPO = Path(__file__).resolve().parents[2]
WATCHDOG_S = 1.0  # pings every 0.5 s


def gateway_toml(tmp: Path, *, broker_port: int, http_port: int, extra: str = "",
                 replication: str = "enabled = false") -> Path:
    path = tmp / "gateway.toml"
    path.write_text(f'[gateway]\nid = "gw-sd"\nclinic_id = "clinic-sd"\ndata_dir = "{tmp / "data"}"\n'
                    f'[mqtt]\nhost = "127.0.0.1"\nport = {broker_port}\n'
                    f'[http]\nport = {http_port}\n[replication]\n{replication}\n{extra}')
    return path


def spawn(args: list[str], env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    with log.open("ab") as out:
        return subprocess.Popen([sys.executable, *args], cwd=REPO, stdout=out, stderr=subprocess.STDOUT,
                                env={**os.environ, **env}, start_new_session=True)


def stop(proc: subprocess.Popen[bytes], timeout_s: float = 30) -> int:
    if proc.poll() is None:
        proc.send_signal(signal.SIGCONT)
        proc.terminate()
    try:
        return proc.wait(timeout_s)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(5)
        raise


def pings_between(ns: NotifySocket, start: float, end: float) -> int:
    return sum(1 for n in ns.with_field("WATCHDOG") if start <= n.at < end)


@pytest.fixture
def notify() -> Iterator[NotifySocket]:
    with NotifySocket() as ns:
        yield ns


def test_gateway_offline_is_ready_and_fed_but_a_frozen_gateway_is_not(tmp_path: Path, notify: NotifySocket) -> None:
    http_port = free_port()
    config = gateway_toml(tmp_path, broker_port=free_port(), http_port=http_port)  # no broker there: offline
    proc = spawn(["-m", "gateway", "--config", str(config)], notify.environ(WATCHDOG_S), tmp_path / "gw.log")
    try:
        ready = notify.wait_for("READY", "1")
        assert "outbox holds 0 entries" in ready.fields["STATUS"]
        wait_http_ok(f"http://127.0.0.1:{http_port}/healthz")  # READY came once it could serve
        notify.wait_for("WATCHDOG", count=4, timeout_s=10)
        assert "offline" in notify.with_field("STATUS")[-1].fields["STATUS"]  # offline is normal: still fed

        proc.send_signal(signal.SIGSTOP)  # a hung service: its event loop does not run
        frozen_at = time.monotonic()
        time.sleep(2.5 * WATCHDOG_S)
        proc.send_signal(signal.SIGCONT)
        thawed_at = time.monotonic()
        assert pings_between(notify, frozen_at + 0.1, thawed_at) == 0
        count = len(notify.with_field("WATCHDOG"))
        notify.wait_for("WATCHDOG", count=count + 2, timeout_s=10)  # fed again once it runs

        assert stop(proc) == 0
        notify.wait_for("STOPPING", "1", timeout_s=5)
    finally:
        stop(proc)
    assert (tmp_path / "data" / "outbox.db").exists()


def test_gateway_whose_capture_cannot_start_never_reports_ready(tmp_path: Path, notify: NotifySocket) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        config = gateway_toml(tmp_path, broker_port=free_port(), http_port=free_port(),
                              extra=f'[[tcp]]\nhost = "127.0.0.1"\nport = {port}\ndevice_id = "lan"\n')
        proc = spawn(["-m", "gateway", "--config", str(config)], notify.environ(WATCHDOG_S), tmp_path / "gw.log")
        try:
            code = proc.wait(30)
        finally:
            stop(proc)
    assert code != 0, "a gateway that cannot listen for its monitors must fail, so systemd restarts it"
    assert not notify.with_field("READY") and not notify.with_field("WATCHDOG")
    assert "address already in use" in (tmp_path / "gw.log").read_text().lower()


def test_hq_is_ready_when_serving_and_fed_while_ingest_runs(tmp_path: Path, broker: Mosquitto) -> None:
    port = free_port()
    config = tmp_path / "hq.toml"
    config.write_text(f'[database]\nurl = "sqlite:///{tmp_path / "hq.db"}"\n'
                      f'[mqtt]\nhost = "{broker.host}"\nport = {broker.port}\n'
                      f'[http]\nhost = "127.0.0.1"\nport = {port}\n[replication]\nenabled = false\n')
    with NotifySocket(abstract=True) as ns:
        proc = spawn(["-m", "hq", "serve", "--config", str(config)], ns.environ(WATCHDOG_S), tmp_path / "hq.log")
        try:
            ready = ns.wait_for("READY", "1")
            assert ready.fields["STATUS"] == f"serving http://127.0.0.1:{port}"
            wait_http_ok(f"http://127.0.0.1:{port}/healthz")
            ns.wait_for("WATCHDOG", count=4, timeout_s=10)
            eventually(lambda: ns.with_field("STATUS", "connected to the broker"), timeout_s=15,
                       what="HQ's status line to say it is connected")
            assert stop(proc) == 0
            ns.wait_for("STOPPING", "1", timeout_s=5)
        finally:
            stop(proc)


def test_external_replicator_runs_litestream_for_the_gateway(tmp_path: Path, notify: NotifySocket) -> None:
    http_port = free_port()
    config = gateway_toml(tmp_path, broker_port=free_port(), http_port=http_port,
                          replication='enabled = true\nmode = "external"')
    replicator = spawn(["-m", "gateway", "replicate", "--config", str(config)], notify.environ(WATCHDOG_S),
                       tmp_path / "replicate.log")
    gateway = None
    try:
        # Ready before the gateway exists: the gateway's unit is ordered after this one.
        assert "waiting for" in notify.wait_for("READY", "1").fields["STATUS"]
        gateway = spawn(["-m", "gateway", "--config", str(config)], {}, tmp_path / "gw.log")
        wait_http_ok(f"http://127.0.0.1:{http_port}/healthz")
        replica = tmp_path / "data" / "replica" / "outbox.db"
        eventually(lambda: any(replica.glob("ltx/*/*.ltx")), timeout_s=30, what="the replica's first LTX file")
        assert "litestream (pid" in notify.with_field("STATUS")[-1].fields["STATUS"]
        import json
        import urllib.request

        with urllib.request.urlopen(f"http://127.0.0.1:{http_port}/api/v1/status", timeout=5) as resp:
            assert json.load(resp)["replication"] == {"enabled": True, "mode": "external"}
        assert stop(gateway) == 0
        assert stop(replicator) == 0
        notify.wait_for("STOPPING", "1", timeout_s=5)
    finally:
        stop(replicator)
        if gateway is not None:
            stop(gateway)
    log = (tmp_path / "replicate.log").read_text()
    assert "replicates" in log and " ERROR " not in log


def test_replicate_refuses_a_configuration_whose_service_runs_litestream_itself(tmp_path: Path) -> None:
    config = gateway_toml(tmp_path, broker_port=1, http_port=0, replication="enabled = true")
    done = subprocess.run([sys.executable, "-m", "gateway", "replicate", "--config", str(config)], cwd=REPO,
                          capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 2
    assert "mode is 'child'" in done.stderr and 'mode = "external"' in done.stderr


def test_external_replicator_runs_litestream_for_hq(tmp_path: Path, notify: NotifySocket) -> None:
    port = free_port()
    config = tmp_path / "hq.toml"
    config.write_text(f'[database]\nurl = "sqlite:///{tmp_path / "hq.db"}"\n[mqtt]\nport = {free_port()}\n'
                      f'[http]\nport = {port}\n[replication]\nmode = "external"\n')
    replicator = spawn(["-m", "hq", "replicate", "--config", str(config)], notify.environ(WATCHDOG_S),
                       tmp_path / "replicate.log")
    hq = spawn(["-m", "hq", "serve", "--config", str(config)], {}, tmp_path / "hq.log")
    try:
        notify.wait_for("READY", "1")
        eventually(lambda: any((tmp_path / "replica" / "hq.db").glob("ltx/*/*.ltx")), timeout_s=30,
                   what="the replica's first LTX file")
        assert "litestream (pid" not in (tmp_path / "hq.log").read_text()  # HQ itself runs none in this mode
        assert stop(hq) == 0 and stop(replicator) == 0
    finally:
        stop(hq)
        stop(replicator)


def test_hq_replicate_refuses_a_postgresql_database(tmp_path: Path) -> None:
    config = tmp_path / "hq.toml"
    config.write_text('[database]\nurl = "postgresql+psycopg://hq@db.internal:5432/clinic"\n'
                      '[replication]\nmode = "external"\n')
    done = subprocess.run([sys.executable, "-m", "hq", "replicate", "--config", str(config)], cwd=REPO,
                          capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 2 and "back PostgreSQL up with its own tools" in done.stderr
