"""The outbox against a real SQLite file: durability, sequence numbers, lanes, size per reading."""

import asyncio
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from gateway.outbox import Entry, Outbox, OutboxError, skip_seqs_after_restore
from gateway.wire import Lane

T0 = 1_795_300_000_000


def vital(i: int, patient: str = "P1") -> Entry:
    return Entry("observation", "MDC_PULS_OXIM_SAT_O2", float(90 + i % 10), "%", T0 + i * 1000, T0 + i * 1000 + 30,
                 patient, "oxi-1")


def alarm(i: int) -> Entry:
    return Entry("alarm", "MDC_PULS_OXIM_SAT_O2", 85.0, "%", T0 + i, T0 + i, "P1", "oxi-1",
                 {"alarm": {"event": "MDC_EVT_LO", "priority": "high", "state": "active", "text": "SpO2 low"}})


async def test_sequence_numbers_increase_and_survive_reopen(tmp_path: Path) -> None:
    ob = Outbox(tmp_path / "o.db", "gw-a")
    await ob.open()
    assert await ob.append([vital(0), vital(1)]) == [1, 2]
    assert await ob.append([alarm(2)]) == [3]
    await ob.close()
    ob = Outbox(tmp_path / "o.db", "gw-a")
    await ob.open()
    assert ob.count() == 3
    assert await ob.append([vital(3)]) == [4]
    await ob.close()


async def test_sequence_numbers_are_never_reused_after_the_outbox_drains(tmp_path: Path) -> None:
    ob = Outbox(tmp_path / "o.db", "gw-a")
    await ob.open()
    await ob.append([vital(i) for i in range(10)])
    assert await ob.remove_acked([(Lane.VITALS, 1, 10)]) == 10
    assert ob.count() == 0
    await ob.close()
    ob = Outbox(tmp_path / "o.db", "gw-a")
    await ob.open()
    # HQ already holds seqs 1-10: reusing them would make HQ drop new readings as duplicates.
    assert await ob.append([vital(11)]) == [11]
    await ob.close()


async def test_alarms_and_vitals_go_to_their_lanes_and_read_back_exactly(tmp_path: Path) -> None:
    ob = Outbox(tmp_path / "o.db", "gw-a")
    await ob.open()
    await ob.append([vital(0), alarm(1), vital(2, patient="患者-7")])
    vitals = await ob.read_lane(Lane.VITALS, 0, 10)
    alarms = await ob.read_lane(Lane.ALARM, 0, 10)
    assert [r.seq for r in vitals] == [1, 3] and [r.seq for r in alarms] == [2]
    assert vitals[1].patient_id == "患者-7" and vitals[1].value == 92.0 and vitals[1].recv_ms == T0 + 2030
    assert alarms[0].extra == alarm(1).extra and alarms[0].kind == "alarm"
    assert await ob.read_lane(Lane.VITALS, 1, 10) == vitals[1:]
    backlog = await ob.backlog()
    assert backlog[Lane.VITALS].count == 2 and backlog[Lane.VITALS].oldest_ms == T0 + 30
    # Removing is idempotent and only touches the named lane's range.
    assert await ob.remove_acked([(Lane.VITALS, 1, 1), (Lane.VITALS, 1, 1), (Lane.ALARM, 5, 9)]) == 1
    assert ob.count(Lane.VITALS) == 1 and ob.count(Lane.ALARM) == 1
    await ob.close()


async def test_concurrent_appenders_share_commits(tmp_path: Path) -> None:
    ob = Outbox(tmp_path / "o.db", "gw-a")
    await ob.open()
    results = await asyncio.gather(*(ob.append([vital(i), vital(i + 1)]) for i in range(0, 200, 2)))
    seqs = [s for r in results for s in r]
    assert sorted(seqs) == list(range(1, 201)) and len(set(seqs)) == 200
    assert ob.commits_total < 100  # group commit: fewer transactions than callers
    await ob.close()


async def test_refuses_another_gateways_database(tmp_path: Path) -> None:
    ob = Outbox(tmp_path / "o.db", "gw-a")
    await ob.open()
    await ob.close()
    other = Outbox(tmp_path / "o.db", "gw-b")
    with pytest.raises(OutboxError, match="belongs to gateway 'gw-a', not 'gw-b'"):
        await other.open()


async def test_stored_reading_is_small(tmp_path: Path) -> None:
    ob = Outbox(tmp_path / "o.db", "gw-a")
    await ob.open()
    n = 20_000
    for start in range(0, n, 1000):
        await ob.append([vital(i, patient=f"P{i % 16}") for i in range(start, start + 1000)])
    per_reading = await ob.size_bytes() / n
    await ob.close()
    assert per_reading <= 60, per_reading


def test_a_committed_reading_survives_kill_9(tmp_path: Path) -> None:
    """A child appends and reports each committed seq; we kill -9 it mid-stream; every reported seq is there."""
    script = textwrap.dedent(f"""
        import asyncio, sys
        from pathlib import Path
        sys.path.insert(0, {str(Path(__file__).resolve().parents[3])!r})
        from gateway.outbox import Outbox, Entry
        async def main():
            ob = Outbox(Path({str(tmp_path / 'o.db')!r}), "gw-a")
            await ob.open()
            i = 0
            while True:
                seqs = await ob.append([Entry("observation", "M", float(i), None, i, i, None, "d")
                                        for _ in range(50)])
                print(seqs[-1], flush=True)
                i += 1
        asyncio.run(main())
    """)
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    last = 0
    for _ in range(40):
        last = int(proc.stdout.readline())
    proc.send_signal(signal.SIGKILL)
    proc.wait()

    async def check() -> None:
        ob = Outbox(tmp_path / "o.db", "gw-a")
        await ob.open()
        rows = await ob.read_lane(Lane.VITALS, 0, 1_000_000)
        seqs = [r.seq for r in rows]
        assert seqs == list(range(1, len(seqs) + 1))  # no holes
        assert len(seqs) >= last  # everything reported committed is there
        assert ob.next_seq == len(seqs) + 1
        await ob.close()

    asyncio.run(check())


async def test_unusable_location_is_a_clear_outbox_error(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    ob = Outbox(blocker / "sub" / "o.db", "gw-a")
    with pytest.raises(OutboxError, match="cannot create the outbox directory"):
        await ob.open()


async def test_a_full_disk_fails_the_append_and_loses_nothing_committed(tmp_path: Path) -> None:
    """SQLite's max_page_count stands in for a full disk: the append fails cleanly, earlier data stays."""
    ob = Outbox(tmp_path / "o.db", "gw-a")
    await ob.open()
    await ob.append([vital(i) for i in range(100)])
    assert ob._conn is not None
    await ob._run(lambda: ob._conn.exec_driver_sql("PRAGMA max_page_count = 40").close())
    with pytest.raises(OutboxError, match="full"):
        for start in range(0, 20_000, 1000):
            await ob.append([vital(i) for i in range(start, start + 1000)])
    rows = await ob.read_lane(Lane.VITALS, 0, 100_000)
    assert [r.seq for r in rows][:100] == list(range(1, 101))
    assert [r.seq for r in rows] == list(range(1, len(rows) + 1))
    assert ob.next_seq == len(rows) + 1  # a failed commit consumed no sequence numbers
    await ob.close()


async def test_stale_vitals_move_to_the_backlog_lane_unless_already_sent(tmp_path: Path) -> None:
    ob = Outbox(tmp_path / "o.db", "gw-a")
    await ob.open()
    await ob.append([vital(i) for i in range(0, 10)])  # received at T0 .. T0+9 s
    await ob.append([vital(i) for i in range(10, 20)])  # received at T0+10 .. T0+19 s
    await ob.append([vital(i) for i in range(100, 105)])  # received at T0+100 s: still live
    # Seqs 1-3 are in flight (sent, not yet acknowledged): they stay where they are.
    moved = await ob.demote_stale_vitals(received_before_ms=T0 + 50_000, after_seq=3)
    assert moved == 17
    assert [r.seq for r in await ob.read_lane(Lane.BACKLOG, 0, 100)] == list(range(4, 21))
    assert [r.seq for r in await ob.read_lane(Lane.VITALS, 0, 100)] == [1, 2, 3, 21, 22, 23, 24, 25]
    assert ob.count(Lane.BACKLOG) == 17 and ob.count(Lane.VITALS) == 8
    backlog_rows = await ob.read_lane(Lane.BACKLOG, 0, 1)
    assert backlog_rows[0].value == vital(3).value and backlog_rows[0].recv_ms == vital(3).recv_ms
    assert await ob.demote_stale_vitals(received_before_ms=T0 + 50_000, after_seq=3) == 0
    await ob.close()
    # After a restart the backlog is still the backlog, and the live lane's tail can still be demoted.
    ob = Outbox(tmp_path / "o.db", "gw-a")
    await ob.open()
    assert ob.count(Lane.BACKLOG) == 17
    assert await ob.demote_stale_vitals(received_before_ms=T0 + 200_000, after_seq=3) == 5
    await ob.close()


async def test_quota_drops_oldest_vitals_first_never_alarms_and_records_the_gaps(tmp_path: Path) -> None:
    quota_bytes = 256 * 1024
    ob = Outbox(tmp_path / "o.db", "gw-a", quota_bytes=quota_bytes)
    await ob.open()
    appended = 0
    for start in range(0, 30_000, 500):
        await ob.append([vital(i, patient=f"P{i % 2}") for i in range(start, start + 500)])
        await ob.append([alarm(start)])
        appended += 500
    assert await ob.size_bytes() <= quota_bytes * 1.05
    assert ob.dropped_total > 10_000
    entries = await ob.read_lane(Lane.ALARM, 0, 1_000_000)
    alarms = [e for e in entries if e.kind == "alarm"]
    gaps = [e for e in entries if e.kind == "gap"]
    assert len(alarms) == 60  # every alarm kept
    assert sum(int(g.value or 0) for g in gaps) == ob.dropped_total
    assert {g.patient_id for g in gaps} == {"P0", "P1"} and {g.device_id for g in gaps} == {"oxi-1"}
    kept = await ob.read_lane(Lane.VITALS, 0, 1_000_000)
    assert len(kept) + ob.dropped_total == appended
    assert min(r.seq for r in kept) > max(int(g.extra["last_seq"]) for g in gaps if g.extra)  # oldest went first
    first = gaps[0].extra
    assert first is not None and first["reason"] == "outbox quota" and first["from_ms"] <= first["to_ms"]
    await ob.close()


async def test_confirmed_entries_are_kept_for_a_replay_then_expire(tmp_path: Path) -> None:
    ob = Outbox(tmp_path / "o.db", "gw-a", retain_sent_ms=3_600_000)
    await ob.open()
    await ob.append([vital(i) for i in range(10)] + [alarm(10)])
    assert await ob.floor() == 1
    assert await ob.remove_acked([(Lane.VITALS, 1, 4), (Lane.ALARM, 11, 11)]) == 5
    assert (ob.count(), ob.retained) == (6, 5)
    assert await ob.floor() == 5  # 1-4 confirmed; 5 still waits
    assert await ob.remove_acked([(Lane.VITALS, 5, 10)]) == 6
    assert await ob.floor() == ob.next_seq == 12
    await ob.close()
    ob = Outbox(tmp_path / "o.db", "gw-a", retain_sent_ms=3_600_000)
    await ob.open()
    assert (ob.count(), ob.retained, ob.next_seq) == (0, 11, 12)
    # Nothing was confirmed over an hour ago; everything was confirmed before a minute from now.
    assert await ob.expire_sent(confirmed_before_ms=T0) == 0
    assert await ob.expire_sent(confirmed_before_ms=time.time_ns() // 1_000_000 + 60_000) == 11
    assert ob.retained == 0
    await ob.close()


async def test_a_replay_puts_kept_entries_back_once_per_request(tmp_path: Path) -> None:
    ob = Outbox(tmp_path / "o.db", "gw-a", retain_sent_ms=3_600_000)
    await ob.open()
    await ob.append([vital(i) for i in range(10)] + [alarm(10)])
    await ob.remove_acked([(Lane.VITALS, 1, 10), (Lane.ALARM, 11, 11)])
    assert await ob.replay_from("restore-1", from_seq=6) == 6
    # Vitals come back as backlog (they are old), the alarm as an alarm; 1-5 stay kept.
    assert [r.seq for r in await ob.read_lane(Lane.BACKLOG, 0, 100)] == [6, 7, 8, 9, 10]
    replayed_alarm = (await ob.read_lane(Lane.ALARM, 0, 100))[0]
    assert replayed_alarm.seq == 11 and replayed_alarm.extra == alarm(10).extra
    assert (ob.count(), ob.retained, await ob.floor()) == (6, 5, 6)
    assert await ob.replay_from("restore-1", from_seq=1) is None  # retained request seen again
    await ob.close()
    ob = Outbox(tmp_path / "o.db", "gw-a", retain_sent_ms=3_600_000)
    await ob.open()
    assert await ob.replay_from("restore-1", from_seq=1) is None  # also after a restart
    assert await ob.replay_from("restore-2", from_seq=1) == 5
    assert ob.count() == 11 and ob.retained == 0
    await ob.close()


async def test_quota_deletes_confirmed_entries_before_dropping_any_waiting_one(tmp_path: Path) -> None:
    quota_bytes = 256 * 1024
    ob = Outbox(tmp_path / "o.db", "gw-a", quota_bytes=quota_bytes, retain_sent_ms=3_600_000)
    await ob.open()
    for start in range(0, 10_000, 500):
        seqs = await ob.append([vital(i) for i in range(start, start + 500)])
        await ob.remove_acked([(Lane.VITALS, seqs[0], seqs[-1])])
    assert ob.expired_total > 0 and ob.dropped_total == 0  # kept entries made room; no gap needed
    waiting = await ob.append([vital(i) for i in range(10_000, 10_500)])
    assert ob.dropped_total == 0 and ob.count(Lane.VITALS) == len(waiting)
    assert await ob.size_bytes() <= quota_bytes * 1.05
    await ob.close()


def test_restoring_an_outbox_moves_next_seq_past_anything_it_may_have_handed_out(tmp_path: Path) -> None:
    async def fill() -> None:
        ob = Outbox(tmp_path / "o.db", "gw-a", retain_sent_ms=3_600_000)
        await ob.open()
        await ob.append([vital(i) for i in range(5)])
        await ob.remove_acked([(Lane.VITALS, 1, 5)])
        await ob.close()

    asyncio.run(fill())
    assert skip_seqs_after_restore(tmp_path / "o.db", margin=1000) == (6, 1006)
    with pytest.raises(OutboxError, match="no outbox database at"):
        skip_seqs_after_restore(tmp_path / "missing.db")
    sqlite3.connect(tmp_path / "other.db").execute("CREATE TABLE meta (key TEXT, value TEXT)").connection.commit()
    with pytest.raises(OutboxError, match="not an outbox database"):
        skip_seqs_after_restore(tmp_path / "other.db")
