"""Booking on SQLite and PostgreSQL: published slots only, never a double booking (also under concurrent
threads and processes), cancellation and rescheduling, urgent extra slots decided by the department's heads,
reminders, and what each change writes (claims, consultation, audit entry, notice to the clinic's gateway)."""

from __future__ import annotations

import multiprocessing
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

import pytest
import sqlalchemy as sa

from hq import audit, booking, db, scheduling
from hq import consultations as consult
from hq.after_commit import AfterCommit
from hq.booking import BookingError, NotAllowed, NotFound, SlotTaken, WrongState
from hq.config import ConsultationsSection
from hq.models import appointments, audit_log, availability_exceptions, consultations, downlink_messages, slot_claims
from tests.support import directory, schedule_rows

BERLIN = ZoneInfo("Europe/Berlin")
MIN = 60_000


def berlin(d: int, h: int, mi: int = 0) -> int:
    """January 2030 in Berlin (CET); the 7th is a Monday."""
    return int(datetime(2030, 1, d, h, mi, tzinfo=BERLIN).timestamp() * 1000)


NOW = berlin(1, 12)


@dataclass
class World:
    engine: sa.Engine
    expert: int
    other_expert: int
    dept: int
    patient: int

    def actor(self, username: str) -> Any:
        with self.engine.connect() as conn:
            return schedule_rows.actor(conn, username)

    def run(self, fn: Any, *args: Any, **kwargs: Any) -> Any:
        with self.engine.begin() as conn:
            return fn(conn, *args, **kwargs)

    def rows(self, query: Any) -> list[dict[str, Any]]:
        with self.engine.connect() as conn:
            return [dict(r) for r in conn.execute(query).mappings()]


@pytest.fixture
def world(db_url: str) -> Iterator[World]:
    engine = db.create_engine_for(db_url)
    db.upgrade_schema(engine)
    with engine.begin() as conn:
        schedule_rows.gateway(conn, "gw-a", "clinic-a")
        directory.add_clinic(conn, "clinic-b")
        dept = directory.add_department(conn, "cardiology")
        other_dept = directory.add_department(conn, "neurology")
        expert, _ = schedule_rows.expert(conn, "wang", dept, name="Dr. Wang", time_zone="Europe/Berlin")
        for weekday in range(5):
            schedule_rows.rule(conn, expert, weekday, "09:00", "12:00", 30)
        other, _ = schedule_rows.expert(conn, "li", other_dept, name="Dr. Li", time_zone="Asia/Shanghai")
        schedule_rows.every_day(conn, other, "08:00", "18:00", 60)
        patient = schedule_rows.patient(conn, "clinic-a", "MRN-7")
        schedule_rows.user(conn, "nurse-a", "clinic_staff", clinic_id="clinic-a")
        schedule_rows.user(conn, "nurse-b", "clinic_staff", clinic_id="clinic-b")
        schedule_rows.user(conn, "coord", "coordinator")
        schedule_rows.user(conn, "root", "admin")
        schedule_rows.head(conn, "head-cardio", dept)
        schedule_rows.head(conn, "head-neuro", other_dept)
    yield World(engine, expert, other, dept, patient)
    engine.dispose()


def book(w: World, username: str = "nurse-a", start: int = berlin(7, 9), minutes: int = 30, **kw: Any) -> Any:
    return w.run(booking.book, w.actor(username), expert_id=kw.pop("expert_id", w.expert), start_ms=start,
                 end_ms=start + minutes * MIN, now=kw.pop("now", NOW), **kw)


def claims(w: World) -> list[tuple[int, int]]:
    return [(r["appointment_id"], r["unit_start_ms"]) for r in w.rows(
        sa.select(slot_claims).order_by(slot_claims.c.unit_start_ms))]


def notices(w: World) -> list[tuple[str, dict[str, Any]]]:
    return [(r["kind"], r["body"]) for r in w.rows(sa.select(downlink_messages).order_by(downlink_messages.c.id))]


def overlapping_bookings(engine: sa.Engine) -> int:
    with engine.connect() as conn:
        return booking.double_bookings(conn)


# ---- booking --------------------------------------------------------------------------------
def test_booking_a_published_slot_writes_everything_in_one_go(world: World) -> None:
    change = book(world, mrn="MRN-7", reason="Chest pain follow-up")
    a = change.appointment
    assert (a["status"], a["expert_id"], a["clinic_id"], a["patient_id"], a["department_id"]) == (
        "booked", world.expert, "clinic-a", world.patient, world.dept)
    assert [u for _, u in claims(world)] == [berlin(7, 9) + i * 5 * MIN for i in range(6)]
    consultation = world.rows(sa.select(consultations))[0]
    assert (consultation["kind"], consultation["status"], consultation["expert_id"], consultation["requested_ms"],
            consultation["scheduled_ms"]) == ("routine", "scheduled", world.expert, NOW, berlin(7, 9))
    assert a["consultation_public_id"] == consultation["public_id"]
    [(kind, body)] = notices(world)
    assert kind == "appointment.confirmed"
    assert body == {**body, "appointment_id": a["id"], "status": "booked", "start_ms": berlin(7, 9),
                    "end_ms": berlin(7, 9, 30), "expert_name": "Dr. Wang", "department": "Cardiology",
                    "expert_time_zone": "Europe/Berlin", "patient_mrn": "MRN-7",
                    "public_id": consultation["public_id"]}
    assert body["text"] == "Consultation with Dr. Wang booked for Mon 7 Jan 2030 09:00 CET (the expert's time)."
    entry = world.rows(sa.select(audit_log).where(audit_log.c.action == "appointment.book"))[0]
    assert (entry["actor"], entry["target_id"], entry["clinic_id"]) == ("user:nurse-a", str(a["id"]), "clinic-a")
    assert audit.verify(world.engine).ok
    # The clinic's staff and the expert are told live.
    assert [(m["event"], users, clinic) for m, users, _roles, clinic in change.live] == [
        ("appointment.confirmed", None, "clinic-a"), ("appointment.confirmed", (a["expert_user_id"],), None)]


@pytest.mark.parametrize(("start", "minutes", "message"), [
    (berlin(7, 9), 60, "not one of the expert's published slots"),
    (berlin(7, 9, 10), 30, "not one of the expert's published slots"),
    (berlin(7, 12), 30, "not one of the expert's published slots"),
    (berlin(5, 9), 30, "not one of the expert's published slots"),  # a Saturday
    (berlin(7, 9) + 60_000, 30, "5-minute grid"),
])
def test_only_published_slots_can_be_booked(world: World, start: int, minutes: int, message: str) -> None:
    with pytest.raises(BookingError, match=message):
        book(world, start=start, minutes=minutes)
    assert world.rows(sa.select(appointments)) == [] and claims(world) == []


def test_leave_and_clinic_duty_take_their_slots_away(world: World) -> None:
    with world.engine.begin() as conn:
        conn.execute(availability_exceptions.insert().values(expert_id=world.expert, starts_ms=berlin(7, 9, 20),
                                                             ends_ms=berlin(7, 9, 40), kind="clinic_duty",
                                                             created_ms=NOW))
    for start in (berlin(7, 9), berlin(7, 9, 30)):
        with pytest.raises(BookingError, match="published slots"):
            book(world, start=start)
    book(world, start=berlin(7, 10))


def test_bad_requests_are_refused_with_what_was_wrong(world: World) -> None:
    with pytest.raises(BookingError, match="that time has passed"):
        book(world, now=berlin(7, 9, 1))
    with pytest.raises(NotAllowed, match="their own clinic"):
        book(world, clinic_id="clinic-b")
    with pytest.raises(BookingError, match="no patient with record number 'MRN-404' at clinic clinic-a"):
        book(world, mrn="MRN-404")
    with pytest.raises(BookingError, match=f"no patient {world.patient} that you may book for"):
        book(world, "nurse-b", patient_id=world.patient)
    with pytest.raises(BookingError, match="which clinic"):
        book(world, "coord")
    with pytest.raises(NotAllowed, match="may not book"):
        book(world, "head-cardio")
    with pytest.raises(BookingError, match="no expert 999"):
        book(world, expert_id=999)
    coordinator = book(world, "coord", clinic_id="clinic-b").appointment
    assert coordinator["clinic_id"] == "clinic-b"
    assert notices(world) == []  # clinic-b has no gateway yet: nothing to deliver to


def test_the_same_time_cannot_be_booked_twice_even_overlapping_differently(world: World) -> None:
    book(world, start=berlin(7, 9, 30))
    with pytest.raises(SlotTaken, match="booked already"):
        book(world, "nurse-b", start=berlin(7, 9, 30))
    # An urgent extra slot from 08:45 to 09:15 holds 09:00-09:15: the 09:00 slot cannot be booked any more.
    world.run(booking.request_extra, world.actor("nurse-a"), expert_id=world.expert, start_ms=berlin(7, 8, 45),
              end_ms=berlin(7, 9, 15), now=NOW, reason="Deteriorating")
    with pytest.raises(SlotTaken):
        book(world, start=berlin(7, 9))
    assert len(world.rows(sa.select(appointments))) == 2 and len(claims(world)) == 12
    assert overlapping_bookings(world.engine) == 0


def test_the_primary_key_refuses_what_the_quick_check_let_through(world: World) -> None:
    """B checks while A's booking of the same slot is not committed yet: B's check sees nothing, and the slot
    claims' primary key refuses B once A commits (B waits for A's lock meanwhile, on either database)."""
    nurse = world.actor("nurse-a")
    a_booked, b_done = threading.Event(), threading.Event()
    outcome: list[str] = []

    def b() -> None:
        a_booked.wait(10)
        try:
            with world.engine.begin() as conn:
                booking.book(conn, nurse, expert_id=world.expert, start_ms=berlin(7, 9), end_ms=berlin(7, 9, 30),
                             now=NOW)
            outcome.append("booked")
        except SlotTaken as exc:
            outcome.append(str(exc))
        b_done.set()

    thread = threading.Thread(target=b)
    thread.start()
    with world.engine.begin() as conn:
        booking.book(conn, nurse, expert_id=world.expert, start_ms=berlin(7, 9), end_ms=berlin(7, 9, 30), now=NOW)
        a_booked.set()
        assert not b_done.wait(1.0), "B finished while A held the slot uncommitted"
    thread.join(30)
    assert outcome == ["that time was just booked by someone else; choose another slot"]
    assert overlapping_bookings(world.engine) == 0


def test_concurrent_threads_book_each_slot_exactly_once(world: World) -> None:
    starts = [berlin(7, 9), berlin(7, 9, 30), berlin(7, 10)]
    per_slot = 12
    gate = threading.Barrier(len(starts) * per_slot)
    outcomes: list[str] = []
    lock = threading.Lock()
    nurse = world.actor("nurse-a")

    def attempt(start: int) -> None:
        gate.wait()
        try:
            with world.engine.begin() as conn:
                booking.book(conn, nurse, expert_id=world.expert, start_ms=start, end_ms=start + 30 * MIN, now=NOW)
            outcome = "booked"
        except SlotTaken:
            outcome = "taken"
        except Exception as exc:  # anything else is a failure of the test
            outcome = f"error: {exc!r}"
        with lock:
            outcomes.append(outcome)

    threads = [threading.Thread(target=attempt, args=(s,)) for s in starts for _ in range(per_slot)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert sorted(outcomes) == ["booked"] * 3 + ["taken"] * (3 * per_slot - 3)
    assert overlapping_bookings(world.engine) == 0
    assert sorted(r["start_ms"] for r in world.rows(sa.select(appointments))) == starts
    assert len(world.rows(sa.select(consultations))) == 3 and len(notices(world)) == 3
    assert audit.verify(world.engine).ok


def _book_in_process(db_url: str, username: str, expert_id: int, start: int, gate: Any, results: Any) -> None:
    engine = db.create_engine_for(db_url)
    try:
        with engine.connect() as conn:
            nurse = schedule_rows.actor(conn, username)
        gate.wait(60)
        try:
            with engine.begin() as conn:
                booking.book(conn, nurse, expert_id=expert_id, start_ms=start, end_ms=start + 30 * MIN, now=NOW)
            results.put("booked")
        except SlotTaken:
            results.put("taken")
        except Exception as exc:
            results.put(f"error: {exc!r}")
    finally:
        engine.dispose()


def test_concurrent_processes_book_a_slot_exactly_once(world: World) -> None:
    # A fork server with the booking code loaded starts each booker in milliseconds (spawn imports it anew).
    ctx = multiprocessing.get_context("forkserver")
    ctx.set_forkserver_preload(["hq.booking", "tests.support.schedule_rows"])
    gate, results = ctx.Barrier(4), ctx.Queue()
    url = world.engine.url.render_as_string(hide_password=False)
    procs = [ctx.Process(target=_book_in_process, args=(url, "nurse-a", world.expert, berlin(7, 11), gate, results))
             for _ in range(4)]
    for p in procs:
        p.start()
    outcomes = sorted(results.get(timeout=120) for _ in procs)
    for p in procs:
        p.join(30)
    assert outcomes == ["booked"] + ["taken"] * 3
    assert overlapping_bookings(world.engine) == 0 and len(claims(world)) == 6


# ---- cancel and reschedule -------------------------------------------------------------------
def test_cancelling_frees_the_time_and_tells_the_clinic(world: World) -> None:
    first = book(world).appointment
    with pytest.raises(NotFound):
        world.run(booking.cancel, world.actor("nurse-b"), first["id"], now=NOW)  # another clinic's: not even seen
    with pytest.raises(NotAllowed):
        world.run(booking.cancel, world.actor("head-cardio"), first["id"], now=NOW)  # sees it, may not cancel
    change = world.run(booking.cancel, world.actor("wang"), first["id"], now=NOW, reason="Called to theatre")
    assert change.appointment["status"] == "cancelled" and change.appointment["cancel_reason"] == "Called to theatre"
    assert claims(world) == []
    [consultation] = world.rows(sa.select(consultations))
    assert (consultation["status"], consultation["cancel_reason"]) == ("cancelled", "Called to theatre")
    # The consultation's cancel is audited and its watchers told, as when it is cancelled from its own page.
    entries = world.rows(sa.select(audit_log.c.action, audit_log.c.actor, audit_log.c.target_id, audit_log.c.detail)
                         .where(audit_log.c.action == "consultation.cancel"))
    assert [(e["target_id"], e["detail"]) for e in entries] == [
        (consultation["public_id"], {"reason": "Called to theatre", "appointment_id": first["id"]})]
    updates = [m for m, _, _, _ in change.live if m["type"] == "consultation.update"]
    assert updates and all(m["consultation"]["status"] == "cancelled" for m in updates)
    assert [k for k, _ in notices(world)] == ["appointment.confirmed", "appointment.cancelled"]
    with pytest.raises(WrongState, match="nothing to cancel"):
        world.run(booking.cancel, world.actor("nurse-a"), first["id"], now=NOW)
    again = book(world, "nurse-b").appointment  # the same slot, free again
    assert again["clinic_id"] == "clinic-b"


def test_cancelling_a_scheduled_consultation_frees_its_booked_time(world: World) -> None:
    first = book(world, mrn="MRN-7").appointment
    row = world.rows(sa.select(consultations))[0]
    config = ConsultationsSection()
    with pytest.raises(consult.NotAllowed):  # the expert cancels the appointment on the schedule page, not here
        world.run(consult.cancel_scheduled, row, "no", actor=world.actor("wang"), config=config,
                  effects=AfterCommit(), now=NOW)
    effects = AfterCommit()
    new = world.run(consult.cancel, row, "  Patient transferred  ", actor=world.actor("nurse-a"), config=config,
                    effects=effects, now=NOW + MIN)  # `cancel` hands a scheduled one to cancel_scheduled
    assert (new["status"], new["cancel_reason"], new["cancelled_ms"]) == ("cancelled", "Patient transferred", NOW + MIN)
    [appointment] = world.rows(sa.select(appointments))
    assert (appointment["status"], appointment["cancel_reason"], appointment["cancelled_ms"]) == (
        "cancelled", "Patient transferred", NOW + MIN)
    assert claims(world) == []
    # The clinic learns it as its booked consultations: by the appointment's notice (no consultation notice,
    # which its gateway would show as a new consultation it never asked for).
    assert [k for k, _ in notices(world)] == ["appointment.confirmed", "appointment.cancelled"]
    assert effects.downlink_queued
    assert {n.message["type"] for n in effects.notices} == {"appointment", "consultation.update"}
    entries = world.rows(sa.select(audit_log.c.action, audit_log.c.target_id, audit_log.c.detail)
                         .where(audit_log.c.action.in_(("appointment.cancel", "consultation.cancel"))))
    assert [(e["action"], e["target_id"]) for e in entries] == [
        ("appointment.cancel", str(first["id"])), ("consultation.cancel", row["public_id"])]
    assert entries[1]["detail"] == {"reason": "Patient transferred", "appointment_id": first["id"]}
    cancelled = world.rows(sa.select(consultations))[0]
    with pytest.raises(consult.ConsultationError, match="only a scheduled consultation"):
        world.run(consult.cancel_scheduled, cancelled, None, actor=world.actor("nurse-a"), config=config,
                  effects=AfterCommit(), now=NOW)
    with pytest.raises(consult.ConsultationError, match="cannot be cancelled"):
        world.run(consult.cancel, cancelled, None, actor=world.actor("nurse-a"), config=config,
                  effects=AfterCommit(), now=NOW)
    assert book(world, "nurse-b").appointment["clinic_id"] == "clinic-b"  # the same slot, free again


def test_rescheduling_moves_the_claims_or_leaves_the_booking_as_it_was(world: World) -> None:
    moving = book(world, start=berlin(7, 9)).appointment
    book(world, start=berlin(7, 10))
    with pytest.raises(SlotTaken):
        world.run(booking.reschedule, world.actor("nurse-a"), moving["id"], start_ms=berlin(7, 10),
                  end_ms=berlin(7, 10, 30), now=NOW)
    assert world.run(booking.appointment_row, moving["id"])["start_ms"] == berlin(7, 9)
    assert sorted(u for a, u in claims(world) if a == moving["id"])[0] == berlin(7, 9)
    with pytest.raises(BookingError, match="published slots"):
        world.run(booking.reschedule, world.actor("nurse-a"), moving["id"], start_ms=berlin(7, 12),
                  end_ms=berlin(7, 12, 30), now=NOW)
    # Half an hour later: the new time overlaps nothing but itself (9:30 is free).
    moved = world.run(booking.reschedule, world.actor("coord"), moving["id"], start_ms=berlin(7, 9, 30),
                      end_ms=berlin(7, 10), now=NOW).appointment
    assert (moved["start_ms"], moved["confirmed_ms"], moved["reminded_ms"]) == (berlin(7, 9, 30), None, None)
    assert sorted(u for a, u in claims(world) if a == moving["id"]) == [berlin(7, 9, 30) + i * 5 * MIN
                                                                       for i in range(6)]
    assert world.rows(sa.select(consultations.c.scheduled_ms).where(
        consultations.c.id == moved["consultation_id"]))[0]["scheduled_ms"] == berlin(7, 9, 30)
    kind, body = notices(world)[-1]
    assert kind == "appointment.rescheduled" and body["previous_start_ms"] == berlin(7, 9)
    book(world, start=berlin(7, 9))  # the old time is free
    assert overlapping_bookings(world.engine) == 0


# ---- urgent extra slots -----------------------------------------------------------------------
def test_urgent_extra_slots_need_a_head_of_that_department(world: World) -> None:
    with pytest.raises(BookingError, match="say why"):
        world.run(booking.request_extra, world.actor("nurse-a"), expert_id=world.expert, start_ms=berlin(7, 13),
                  end_ms=berlin(7, 13, 30), now=NOW, reason="")
    with pytest.raises(BookingError, match="inside the expert's published hours"):
        world.run(booking.request_extra, world.actor("nurse-a"), expert_id=world.expert, start_ms=berlin(7, 9),
                  end_ms=berlin(7, 9, 30), now=NOW, reason="Now")
    change = world.run(booking.request_extra, world.actor("nurse-a"), expert_id=world.expert,
                       start_ms=berlin(7, 13), end_ms=berlin(7, 13, 45), now=NOW, reason="Suspected MI",
                       mrn="MRN-7")
    pending = change.appointment
    assert (pending["status"], pending["urgent_extra"], pending["consultation_id"]) == ("pending_approval", True, None)
    heads = [users for m, users, _r, _c in change.live if m["event"] == "approval_needed"]
    head_id = world.actor("head-cardio").user_id
    assert heads == [(head_id,)]
    for who in ("head-neuro", "coord", "root", "nurse-a"):
        with pytest.raises(NotAllowed):
            world.run(booking.decide_extra, world.actor(who), pending["id"], approve=True, now=NOW)
    approved = world.run(booking.decide_extra, world.actor("head-cardio"), pending["id"], approve=True, now=NOW,
                         note="Go ahead").appointment
    assert (approved["status"], approved["decided_by_user_id"], approved["decision_note"]) == (
        "booked", head_id, "Go ahead")
    assert approved["consultation_id"] is not None
    with pytest.raises(WrongState, match="not waiting for approval"):
        world.run(booking.decide_extra, world.actor("head-cardio"), pending["id"], approve=False, now=NOW)
    assert [k for k, _ in notices(world)] == ["appointment.pending_approval", "appointment.confirmed"]
    actions = [r["action"] for r in world.rows(sa.select(audit_log.c.action).order_by(audit_log.c.id))]
    assert actions == ["appointment.extra_requested", "appointment.extra_approved"]


def test_a_rejected_extra_slot_releases_its_time(world: World) -> None:
    pending = world.run(booking.request_extra, world.actor("nurse-a"), expert_id=world.expert,
                        start_ms=berlin(7, 13), end_ms=berlin(7, 13, 30), now=NOW, reason="Worried").appointment
    with pytest.raises(SlotTaken):
        world.run(booking.request_extra, world.actor("nurse-b"), expert_id=world.expert, start_ms=berlin(7, 13, 15),
                  end_ms=berlin(7, 13, 45), now=NOW, reason="Also worried")
    rejected = world.run(booking.decide_extra, world.actor("head-cardio"), pending["id"], approve=False, now=NOW,
                         note="Use tomorrow's slot").appointment
    assert rejected["status"] == "rejected" and claims(world) == []
    assert notices(world)[-1][0] == "appointment.rejected" and notices(world)[-1][1]["note"] == "Use tomorrow's slot"
    world.run(booking.request_extra, world.actor("nurse-b"), expert_id=world.expert, start_ms=berlin(7, 13, 15),
              end_ms=berlin(7, 13, 45), now=NOW, reason="Also worried")


def test_only_those_who_may_see_an_appointment_find_it(world: World) -> None:
    a = book(world).appointment
    for who in ("nurse-a", "coord", "wang", "head-cardio", "root"):
        assert world.run(booking.visible, world.actor(who), a["id"])["id"] == a["id"]
    for who in ("nurse-b", "li", "head-neuro"):
        with pytest.raises(NotFound):
            world.run(booking.visible, world.actor(who), a["id"])


# ---- reminders and confirmations -------------------------------------------------------------
def test_reminders_go_once_to_appointments_starting_soon(world: World) -> None:
    soon = book(world, start=berlin(7, 9)).appointment
    book(world, start=berlin(8, 9))
    assert world.run(booking.remind_due, now=berlin(7, 7), lead_ms=60 * MIN) == []
    first = world.run(booking.remind_due, now=berlin(7, 8, 15), lead_ms=60 * MIN)
    assert [c.appointment["id"] for c in first] == [soon["id"]]
    assert world.run(booking.remind_due, now=berlin(7, 8, 20), lead_ms=60 * MIN) == []
    kind, body = notices(world)[-1]
    assert kind == "appointment.reminder" and body["appointment_id"] == soon["id"]
    assert world.run(booking.appointment_row, soon["id"])["reminded_ms"] == berlin(7, 8, 15)


def test_a_receipt_confirms_only_the_time_it_was_sent_for(world: World) -> None:
    a = book(world, start=berlin(7, 9)).appointment
    world.run(booking.reschedule, world.actor("nurse-a"), a["id"], start_ms=berlin(7, 10), end_ms=berlin(7, 10, 30),
              now=NOW)
    assert world.run(booking.mark_confirmed, a["id"], start_ms=berlin(7, 9), at_ms=NOW + 1, gateway_id="gw-a") is None
    row = world.run(booking.mark_confirmed, a["id"], start_ms=berlin(7, 10), at_ms=NOW + 2, gateway_id="gw-a")
    assert row is not None and row["confirmed_ms"] == NOW + 2
    assert world.run(booking.mark_confirmed, a["id"], start_ms=berlin(7, 10), at_ms=NOW + 3,
                     gateway_id="gw-a") is None  # once
    delivered = world.rows(sa.select(audit_log).where(audit_log.c.action == "appointment.delivered"))
    assert [(e["actor"], e["target_id"]) for e in delivered] == [("gateway:gw-a", str(a["id"]))]


# ---- availability and proposals --------------------------------------------------------------
def test_publishing_availability_checks_the_rules_and_who_publishes(world: World) -> None:
    rules = [{"weekday": 0, "start": "22:00", "end": "02:00", "slot_minutes": 60},
             {"weekday": 2, "start": "09:00", "end": "11:00", "slot_minutes": 20, "valid_from": "2030-01-01"}]
    with pytest.raises(scheduling.ScheduleError) as refused:
        world.run(scheduling.publish_rules, world.actor("li"), world.expert, rules)
    assert refused.value.status == 403
    with pytest.raises(scheduling.ScheduleError, match="rules\\[1\\]: slot_minutes 7"):
        world.run(scheduling.publish_rules, world.actor("wang"), world.expert,
                  [rules[0], {**rules[1], "slot_minutes": 7}])
    with pytest.raises(scheduling.ScheduleError, match="rules\\[0\\]: valid_from 'soon': expected a date"):
        world.run(scheduling.publish_rules, world.actor("wang"), world.expert, [{**rules[0], "valid_from": "soon"}])
    with pytest.raises(scheduling.ScheduleError, match="rules overlap"):
        world.run(scheduling.publish_rules, world.actor("coord"), world.expert,
                  [rules[0], {"weekday": 1, "start": "01:00", "end": "03:00", "slot_minutes": 60}])
    world.run(scheduling.publish_rules, world.actor("wang"), world.expert, rules)
    shown = world.run(scheduling.availability, world.expert, now=NOW)
    assert [scheduling.rule_json(r)["text"] for r in shown["rules"]] == [
        "Monday 22:00-02:00 (ends the next day), 60-minute slots", "Wednesday 09:00-11:00, 20-minute slots"]
    entry = world.rows(sa.select(audit_log).where(audit_log.c.action == "availability.publish"))[-1]
    assert entry["actor"] == "user:wang" and len(entry["detail"]["rules"]) == 2


def test_an_exception_lists_the_appointments_it_overlaps(world: World) -> None:
    a = book(world, start=berlin(7, 10)).appointment
    exception_id, clashes = world.run(scheduling.add_exception, world.actor("wang"), world.expert,
                                      starts_ms=berlin(7, 0), ends_ms=berlin(8, 0), kind="leave", note="Flu", now=NOW)
    assert [c["id"] for c in clashes] == [a["id"]]
    with pytest.raises(scheduling.ScheduleError, match="kind 'holiday'"):
        world.run(scheduling.add_exception, world.actor("wang"), world.expert, starts_ms=berlin(7, 0),
                  ends_ms=berlin(8, 0), kind="holiday", note=None, now=NOW)
    with pytest.raises(scheduling.ScheduleError) as refused:
        world.run(scheduling.remove_exception, world.actor("li"), exception_id)
    assert refused.value.status == 404
    world.run(scheduling.remove_exception, world.actor("coord"), exception_id)
    assert world.rows(sa.select(availability_exceptions)) == []


def test_proposals_by_department_skip_booked_slots(world: World) -> None:
    book(world, start=berlin(7, 9))
    dept = world.run(scheduling.resolve_department, "CARDIOLOGY")
    assert dept == world.dept and world.run(scheduling.resolve_department, "心内科") == world.dept
    assert world.run(scheduling.resolve_department, "astrology") is None
    request = scheduling.slots.SlotRequest(berlin(7, 0), berlin(14, 0), limit=3)
    found = world.run(scheduling.propose, request, department_id=dept)
    assert [(p["expert"]["name"], p["start_ms"]) for p in found] == [
        ("Dr. Wang", berlin(7, 9, 30)), ("Dr. Wang", berlin(7, 10)), ("Dr. Wang", berlin(7, 10, 30))]
    by_expert = world.run(scheduling.propose, request, expert_id=world.other_expert)
    assert by_expert[0]["start_ms"] == int(datetime(2030, 1, 7, 8, tzinfo=ZoneInfo("Asia/Shanghai")).timestamp()
                                           * 1000)
    assert world.run(scheduling.propose, request, department_id=dept, language="fr") == []
