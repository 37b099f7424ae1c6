"""Litestream replication of a real outbox with the real binary: replicate, lose the database, restore.

Also the supervisor's promises: a killed litestream is restarted, one never outlives a kill -9'd service,
and two never replicate the same database at once.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable
from pathlib import Path

import pytest
import sqlalchemy as sa

from gateway import tomlconfig
from gateway.outbox import RESTORE_SEQ_MARGIN, Entry, Outbox
from gateway.replication import ReplicationError, ReplicationSection, Replicator, restore
from hq.config import HqConfig
from hq.db import create_engine_for
from hq.models import observations
from hq.replay import replay_due
from tests.integration.hq.conftest import FakeGateway, running_hq
from tests.support.mosquitto import Mosquitto
from tests.support.ports import free_port

T0 = 1_795_300_000_000
REPO = Path(__file__).resolve().parents[2]
GATEWAY_ID = "gw-r"


def vital(i: int) -> Entry:
    return Entry("observation", "MDC_PULS_OXIM_SAT_O2", float(90 + i % 10), "%", T0 + i * 1000, T0 + i * 1000 + 30,
                 "P1", "oxi-1")


def alive(pid: int) -> bool:
    """True while the process exists and is not a zombie waiting to be reaped."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


async def eventually(check: Callable[[], bool], timeout_s: float = 15.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout_s
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.05)


def remove_database(path: Path) -> None:
    for name in (path.name, path.name + "-wal", path.name + "-shm"):
        (path.parent / name).unlink(missing_ok=True)


async def write_entries(path: Path, first: int, count: int, per_commit: int = 25) -> None:
    ob = Outbox(path, GATEWAY_ID)
    await ob.open()
    for i in range(first, first + count, per_commit):
        await ob.append([vital(j) for j in range(i, min(i + per_commit, first + count))])
    await ob.close()


async def outbox_state(path: Path) -> tuple[int, int]:
    ob = Outbox(path, GATEWAY_ID)
    await ob.open()
    try:
        return ob.count(), ob.next_seq
    finally:
        await ob.close()


async def test_replica_appears_and_restore_brings_back_every_committed_entry(tmp_path: Path) -> None:
    db = tmp_path / "gw" / "outbox.db"
    ob = Outbox(db, GATEWAY_ID)
    await ob.open()
    replicator = Replicator(db, ReplicationSection())
    replicator.start()
    try:
        await eventually(lambda: replicator.running, what="litestream to start")
        for i in range(0, 2000, 20):  # while litestream runs: many small commits, as capture makes them
            await ob.append([vital(j) for j in range(i, i + 20)])
        replica = tmp_path / "gw" / "replica" / "outbox.db"
        await eventually(lambda: any(replica.glob("ltx/*/*.ltx")), what="the replica's first LTX file")
        await ob.append([vital(j) for j in range(2000, 2100)])  # the last commit just before the stop
        assert replicator.state()["running"] and replicator.restarts == 0 and replicator.errors_total == 0
    finally:
        await ob.close()
        await replicator.stop()
    assert not replicator.running and replicator.last_exit_code == 0

    remove_database(db)
    result = restore(db, ReplicationSection())
    assert result.restored and result.db_path == db and result.replica_url == f"file://{replica}"
    # A clean stop ships the last commit: nothing committed is missing.
    assert await outbox_state(db) == (2100, 2101)


CRASH = textwrap.dedent("""
    import asyncio, os, sys
    from pathlib import Path
    from gateway.outbox import Entry, Outbox

    async def main() -> None:
        ob = Outbox(Path(sys.argv[1]), "gw-r")
        await ob.open()
        await ob.append([Entry("observation", "M", 1.0, "%", 1, 2, "P1", "d") for _ in range(10)])
        os._exit(0)  # like kill -9: the last commits stay in the WAL, not yet checkpointed

    asyncio.run(main())
""")


async def test_restore_refuses_to_overwrite_without_force_and_never_replays_a_stale_wal(tmp_path: Path) -> None:
    db = tmp_path / "outbox.db"
    await write_entries(db, 0, 100)
    replicator = Replicator(db, ReplicationSection())
    replicator.start()
    await write_entries(db, 100, 50)
    await replicator.stop()
    subprocess.run([sys.executable, "-c", CRASH, str(db)], cwd=REPO, check=True, timeout=60)
    wal = tmp_path / "outbox.db-wal"
    assert wal.stat().st_size > 0  # 10 entries the replica never saw

    with pytest.raises(ReplicationError, match=f"^{db} exists; refusing to replace it"):
        restore(db, ReplicationSection())
    db.unlink()  # the database is lost, its WAL is not
    with pytest.raises(ReplicationError, match=f"^{wal} exists; .* use --force to overwrite it$"):
        restore(db, ReplicationSection())
    assert restore(db, ReplicationSection(), force=True).restored
    # SQLite would have applied the old WAL to the restored file: 160 entries, or a corrupt database.
    assert await outbox_state(db) == (150, 151)


async def test_restore_without_a_replica_is_a_clear_error_and_touches_nothing(tmp_path: Path) -> None:
    db = tmp_path / "outbox.db"
    section = ReplicationSection(replica_url=f"file://{tmp_path / 'nowhere'}")
    with pytest.raises(ReplicationError) as err:
        restore(db, section)
    assert str(err.value) == (f"there is no replica of {db} at file://{tmp_path / 'nowhere'} (has replication "
                              "ever run for this database?); nothing was restored")
    assert not db.exists()
    assert not restore(db, section, if_replica_exists=True).restored
    await write_entries(db, 0, 10)
    with pytest.raises(ReplicationError, match="there is no replica"):
        restore(db, section, force=True)
    assert await outbox_state(db) == (10, 11)  # --force without a replica destroys nothing


async def test_a_killed_litestream_is_restarted(tmp_path: Path) -> None:
    db = tmp_path / "outbox.db"
    await write_entries(db, 0, 10)
    replicator = Replicator(db, ReplicationSection(), backoff_initial_s=0.2)
    replicator.start()
    try:
        await eventually(lambda: replicator.running, what="litestream to start")
        first = replicator.pid
        assert first is not None
        os.kill(first, signal.SIGKILL)
        await eventually(lambda: replicator.running and replicator.pid != first, what="a new litestream")
        assert replicator.restarts == 1 and replicator.last_exit_code == -signal.SIGKILL
        assert replicator.state()["last_exit"] == "killed by SIGKILL"
        await write_entries(db, 10, 40)
    finally:
        await replicator.stop()
    remove_database(db)
    assert restore(db, ReplicationSection()).restored
    assert (await outbox_state(db))[0] == 50


SERVICE = textwrap.dedent("""
    import asyncio, sys
    from pathlib import Path
    from gateway.outbox import Outbox
    from gateway.replication import ReplicationSection, Replicator

    async def main() -> None:
        ob = Outbox(Path(sys.argv[1]), "gw-r")
        await ob.open()
        replicator = Replicator(Path(sys.argv[1]), ReplicationSection())
        replicator.start()
        while not replicator.running:
            await asyncio.sleep(0.02)
        print(replicator.pid, flush=True)
        await asyncio.Event().wait()

    asyncio.run(main())
""")


async def test_kill_9_of_the_service_leaves_no_litestream_orphan(tmp_path: Path) -> None:
    db = tmp_path / "outbox.db"
    service = subprocess.Popen([sys.executable, "-c", SERVICE, str(db)], cwd=REPO, stdout=subprocess.PIPE, text=True)
    try:
        assert service.stdout is not None
        child = int(await asyncio.wait_for(asyncio.to_thread(service.stdout.readline), 30))
        assert alive(child)
        service.send_signal(signal.SIGKILL)
        service.wait(10)
        await eventually(lambda: not alive(child), timeout_s=10, what=f"litestream pid {child} to die with its parent")
    finally:
        if service.poll() is None:
            service.kill()
            service.wait()
    # And the service's next run replicates at once: no lock left behind.
    replicator = Replicator(db, ReplicationSection(), lock_wait_s=2)
    replicator.start()
    try:
        await eventually(lambda: replicator.running, timeout_s=5, what="a new litestream")
    finally:
        await replicator.stop()
    assert replicator.last_error is None


async def test_a_second_replicator_waits_until_the_first_litestream_has_exited(tmp_path: Path) -> None:
    db = tmp_path / "outbox.db"
    await write_entries(db, 0, 10)
    first, second = Replicator(db, ReplicationSection()), Replicator(db, ReplicationSection())
    first.start()
    try:
        await eventually(lambda: first.running, what="the first litestream")
        second.start()
        await asyncio.sleep(1.0)
        assert not second.running and second.starts == 0
        await first.stop()
        await eventually(lambda: second.running, what="the second litestream once the first is gone")
    finally:
        await first.stop()
        await second.stop()


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "gateway", *args], cwd=REPO, capture_output=True, text=True,
                          timeout=120, check=False)


async def test_gateway_restore_command_restores_the_outbox_and_skips_its_seqs(tmp_path: Path) -> None:
    config = tmp_path / "gateway.toml"
    config.write_text(f'[gateway]\nid = "{GATEWAY_ID}"\ndata_dir = "{tmp_path / "data"}"\n')
    db = tmp_path / "data" / "outbox.db"
    await write_entries(db, 0, 300)
    replicator = Replicator(db, ReplicationSection())
    replicator.start()
    await write_entries(db, 300, 200)
    await replicator.stop()

    remove_database(db)
    done = run_cli("restore", "--config", str(config))
    assert done.returncode == 0, done.stderr
    assert f"restored {db} from file://{tmp_path / 'data' / 'replica' / 'outbox.db'}" in done.stdout
    assert f"next sequence number moved from 501 to {501 + RESTORE_SEQ_MARGIN}" in done.stdout
    assert await outbox_state(db) == (500, 501 + RESTORE_SEQ_MARGIN)

    refused = run_cli("restore", "--config", str(config))
    assert refused.returncode == 1 and "use --force" in refused.stderr and "Traceback" not in refused.stderr

    # Replication goes on from the restored database, and a second loss restores the newer state.
    replicator = Replicator(db, ReplicationSection())
    replicator.start()
    await write_entries(db, 500, 100)
    await replicator.stop()
    remove_database(db)
    assert run_cli("restore", "--config", str(config)).returncode == 0
    assert await outbox_state(db) == (600, 601 + 2 * RESTORE_SEQ_MARGIN)


def test_gateway_restore_command_without_a_replica_says_so(tmp_path: Path) -> None:
    config = tmp_path / "gateway.toml"
    config.write_text(f'[gateway]\nid = "{GATEWAY_ID}"\ndata_dir = "{tmp_path}"\n')
    done = run_cli("restore", "--config", str(config))
    assert done.returncode == 1
    assert done.stderr.startswith("gateway: restore: there is no replica of") and "Traceback" not in done.stderr


def run_hq_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "hq", *args], cwd=REPO, capture_output=True, text=True,
                          timeout=120, check=False)


async def test_hq_replicates_its_database_and_the_restore_marks_it_for_a_replay(
        broker: Mosquitto, tmp_path: Path) -> None:
    db = tmp_path / "hq.db"
    config = tmp_path / "hq.toml"
    config.write_text(f'[database]\nurl = "sqlite:///{db}"\n[mqtt]\nhost = "{broker.host}"\nport = {broker.port}\n'
                      f"[http]\nport = {free_port()}\n")
    async with running_hq(tomlconfig.load(config, HqConfig)) as hq, FakeGateway(broker) as gw:
        await gw.send(gw.batch(range(1, 11)))
        assert (await gw.next_ack()).ranges
        async with hq.http.get(hq.url + "/metrics") as resp:
            metrics = await resp.text()
        assert "hq_replication_up 1" in metrics and "hq_replication_restarts_total 0" in metrics
    assert alive_litestreams(db) == []

    refused = run_hq_cli("restore", "--config", str(config))
    assert refused.returncode == 1 and "use --force" in refused.stderr and "Traceback" not in refused.stderr
    remove_database(db)
    done = run_hq_cli("restore", "--config", str(config))
    assert done.returncode == 0, done.stderr
    assert f"restored {db} from file://{tmp_path / 'replica' / 'hq.db'}" in done.stdout
    engine = create_engine_for(f"sqlite:///{db}")
    try:
        assert replay_due(engine) is not None
        with engine.connect() as conn:
            assert conn.execute(sa.select(sa.func.count()).select_from(observations)).scalar() == 10
    finally:
        engine.dispose()


def test_hq_restore_refuses_a_postgresql_database(tmp_path: Path) -> None:
    config = tmp_path / "hq.toml"
    config.write_text('[database]\nurl = "postgresql+psycopg://hq@db.internal:5432/clinic"\n')
    done = run_hq_cli("restore", "--config", str(config))
    assert done.returncode == 2 and "restore PostgreSQL with its own tools" in done.stderr


def alive_litestreams(db: Path) -> list[int]:
    """Pids of live litestream processes whose command line names the database's generated config."""
    config = f".{db.name}-litestream.yml"
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            cmdline = (proc / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if any(arg.endswith(config.encode()) and str(db.parent).encode() in arg for arg in cmdline) \
                and alive(int(proc.name)):
            found.append(int(proc.name))
    return found
