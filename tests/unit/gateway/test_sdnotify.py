"""sd_notify over real unix datagram sockets (path and abstract), the watchdog interval, and the feeder."""

from __future__ import annotations

import asyncio
import os
import sqlite3
from pathlib import Path

import pytest

from gateway.replication import is_wal_database
from gateway.sdnotify import Health, Notifier, feed_watchdog, tasks_ended, watchdog_interval_s
from tests.support.notify_socket import NotifySocket


@pytest.mark.parametrize("abstract", [False, True], ids=["path", "abstract"])
def test_notifications_arrive_as_one_datagram_each(abstract: bool) -> None:
    with NotifySocket(abstract=abstract) as ns:
        notifier = Notifier.from_environment(ns.environ())
        assert notifier.enabled
        assert notifier.ready("outbox open")
        assert notifier.watchdog()
        assert notifier.stopping()
        ns.wait_for("STOPPING")
        assert [n.fields for n in ns.received] == [
            {"READY": "1", "STATUS": "outbox open"}, {"WATCHDOG": "1"}, {"STOPPING": "1"}]
        assert notifier.sent_total == 3
        notifier.close()


def test_without_notify_socket_every_call_is_a_no_op() -> None:
    notifier = Notifier.from_environment({})
    assert not notifier.enabled
    assert not notifier.ready() and not notifier.watchdog() and not notifier.status("x")
    assert notifier.sent_total == 0


def test_an_unusable_address_is_ignored_with_a_warning(caplog: pytest.LogCaptureFixture) -> None:
    assert not Notifier("relative/path.sock").enabled
    assert "neither an absolute path" in caplog.text


def test_a_vanished_socket_is_logged_once_and_never_raises(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    notifier = Notifier(str(tmp_path / "gone.sock"))
    assert not notifier.watchdog()
    assert not notifier.watchdog()
    assert caplog.text.count("cannot notify systemd") == 1


def test_a_status_line_with_a_newline_is_refused() -> None:
    with pytest.raises(ValueError, match="one line"):
        Notifier("/run/x").status("two\nlines")


@pytest.mark.parametrize(("env", "expected"), [
    ({}, None),
    ({"WATCHDOG_USEC": "0"}, None),
    ({"WATCHDOG_USEC": "junk"}, None),
    ({"WATCHDOG_USEC": "30000000"}, 15.0),
    ({"WATCHDOG_USEC": "1000000", "WATCHDOG_PID": str(os.getpid())}, 0.5),
    ({"WATCHDOG_USEC": "1000000", "WATCHDOG_PID": "1"}, None),  # meant for another process
])
def test_watchdog_interval_is_half_of_watchdog_usec(env: dict[str, str], expected: float | None) -> None:
    assert watchdog_interval_s(env) == expected


async def test_tasks_ended_names_finished_failed_and_cancelled_tasks() -> None:
    async def forever() -> None:
        await asyncio.Event().wait()

    async def fail() -> None:
        raise RuntimeError("boom")

    tasks = {"alive": asyncio.create_task(forever()), "failed": asyncio.create_task(fail()),
             "cancelled": asyncio.create_task(forever())}
    tasks["cancelled"].cancel()
    await asyncio.wait([tasks["failed"], tasks["cancelled"]])
    assert sorted(tasks_ended(tasks)) == ["cancelled", "failed"]
    tasks["alive"].cancel()


async def test_the_feeder_pings_only_while_healthy_and_shows_the_status() -> None:
    with NotifySocket() as ns:
        notifier = Notifier(ns.address)
        verdict = Health(True, "connected")
        feeder = asyncio.create_task(feed_watchdog(notifier, 0.05, lambda: verdict))
        await asyncio.to_thread(ns.wait_for, "WATCHDOG", count=3)
        verdict = Health(False, "uplink stopped")
        await asyncio.to_thread(ns.wait_for, "STATUS", "unhealthy: uplink stopped")
        pings = len(ns.with_field("WATCHDOG"))
        await asyncio.sleep(0.3)
        assert len(ns.with_field("WATCHDOG")) == pings  # withheld: systemd would restart the service
        verdict = Health(True, "connected")
        await asyncio.to_thread(ns.wait_for, "WATCHDOG", count=pings + 1)
        feeder.cancel()
        statuses = [n.fields["STATUS"] for n in ns.with_field("STATUS")]
        assert statuses == ["connected", "unhealthy: uplink stopped", "connected"]  # only when it changes
        notifier.close()


def test_wal_mode_is_read_from_the_database_header(tmp_path: Path) -> None:
    db = tmp_path / "x.db"
    conn = sqlite3.connect(db)
    conn.execute("CREATE TABLE t (x)")
    conn.commit()
    assert not is_wal_database(db.read_bytes()[:100])
    conn.execute("PRAGMA journal_mode=WAL")
    conn.close()
    assert is_wal_database(db.read_bytes()[:100])
    assert not is_wal_database(b"") and not is_wal_database(b"not a database at all, just bytes")
