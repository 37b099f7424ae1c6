"""The appointment notices of the wire contract, and the clinic's appointments folded from them."""

from __future__ import annotations

import pytest

from gateway import appointment_wire as aw
from gateway import appointments
from gateway.inbox import StoredNotice
from gateway.wire import Notice, WireError

BASE = aw.AppointmentNotice(aw.NOTICE_CONFIRMED, 7, "booked", 1_000_000, 2_800_000, "Dr. Wang", "Chief physician",
                            "Ruijin Hospital", "Cardiology", "Asia/Shanghai", "ab" * 16, "MRN-1", False,
                            "Consultation with Dr. Wang booked")


def stored(notice_id: int, notice: aw.AppointmentNotice, received_ms: int = 5) -> StoredNotice:
    return StoredNotice(notice_id, notice.kind, notice.body(), 1, received_ms, "applied", None)


def variant(kind: str, **changes: object) -> aw.AppointmentNotice:
    from dataclasses import replace

    return replace(BASE, kind=kind, **changes)  # type: ignore[arg-type]


def test_a_notice_body_reads_back_as_it_was_written() -> None:
    for kind in aw.NOTICE_KINDS:
        notice = variant(kind, previous_start_ms=500 if kind == aw.NOTICE_RESCHEDULED else None)
        assert aw.AppointmentNotice.from_body(kind, notice.body()) == notice


@pytest.mark.parametrize(("kind", "change", "message"), [
    ("consultation.update", {}, "not an appointment notice"),
    (aw.NOTICE_CONFIRMED, {"status": "maybe"}, "field 'status' = 'maybe'"),
    (aw.NOTICE_CONFIRMED, {"start_ms": "soon"}, "field 'start_ms' = 'soon'; expected a non-negative integer"),
    (aw.NOTICE_CONFIRMED, {"end_ms": 1_000_000}, "end_ms 1000000 is not after start_ms 1000000"),
    (aw.NOTICE_CONFIRMED, {"expert_name": None}, "field 'expert_name' must be text"),
    (aw.NOTICE_CONFIRMED, {"urgent_extra": "yes"}, "field 'urgent_extra' = 'yes'"),
    (aw.NOTICE_CONFIRMED, {"note": "x" * 2001}, "field 'note' must be text of at most 2000"),
])
def test_a_malformed_notice_names_its_field(kind: str, change: dict[str, object], message: str) -> None:
    with pytest.raises(WireError, match=message):
        aw.AppointmentNotice.from_body(kind, {**BASE.body(), **change})


async def test_the_inbox_handler_rejects_malformed_notices_with_the_reason() -> None:
    assert (await appointments.check_notice(Notice(1, aw.NOTICE_CONFIRMED, BASE.body(), 1))).outcome == "applied"
    bad = await appointments.check_notice(Notice(2, aw.NOTICE_CONFIRMED, {**BASE.body(), "status": None}, 1))
    assert bad.outcome == "rejected" and bad.detail is not None and "status" in bad.detail


def test_the_latest_notice_decides_and_a_reminder_only_marks_it_reminded() -> None:
    confirmed = stored(1, BASE, 10)
    reminder = stored(3, variant(aw.NOTICE_REMINDER), 30)
    moved = stored(4, variant(aw.NOTICE_RESCHEDULED, start_ms=4_000_000, end_ms=5_800_000,
                              previous_start_ms=1_000_000), 40)
    # Arrival order differs from HQ's order: the notice ids decide.
    folded = appointments.fold([reminder, confirmed])
    assert folded[7].notice.kind == aw.NOTICE_CONFIRMED and folded[7].reminded_ms == 30
    after_move = appointments.fold([moved, reminder, confirmed])
    assert after_move[7].notice.start_ms == 4_000_000 and after_move[7].reminded_ms is None
    cancelled = appointments.fold([confirmed, stored(5, variant(aw.NOTICE_CANCELLED, status="cancelled",
                                                                  note="Transferred"), 50)])
    assert (cancelled[7].notice.status, cancelled[7].notice.note) == ("cancelled", "Transferred")
    junk = StoredNotice(9, aw.NOTICE_CONFIRMED, {"appointment_id": 8}, 1, 1, "rejected", "bad")
    other = StoredNotice(10, "consultation.update", {"public_id": "x"}, 1, 1, "applied", None)
    assert set(appointments.fold([confirmed, junk, other])) == {7}


def test_upcoming_keeps_an_hour_after_the_end_soonest_first() -> None:
    late = stored(2, variant(aw.NOTICE_CONFIRMED, appointment_id=8, start_ms=9_000_000, end_ms=10_000_000))
    folded = appointments.fold([stored(1, BASE), late])
    assert [a.appointment_id for a in appointments.upcoming(folded, 0)] == [7, 8]
    assert [a.appointment_id for a in appointments.upcoming(folded, 2_800_000 + 3_600_000)] == [8]
