"""Booking: a clinic books an expert's published slot, asks for an urgent extra slot that a head of the expert's
department approves or rejects, moves or cancels an appointment. Each change is one transaction that also
writes the audit entry, the consultation row and the notice to the clinic's gateway.

No double booking, ever: every booked or pending appointment writes one `slot_claims` row per 5-minute unit
it covers, keyed (expert, unit). Whatever anyone checked before, the database refuses the second claim of a
unit (a primary key, on SQLite and PostgreSQL alike, under any concurrency), and the losing booking is rolled
back whole. Synchronous functions over a connection; `hq.console.schedule` holds the handlers.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa

from gateway import appointment_wire as aw
from hq import audit, consultations, downlink, records, scheduling, slots
from hq.auth import Actor, Role
from hq.clock import iso_from_ms
from hq.live import LiveHub
from hq.models import (
    appointments,
    department_heads,
    departments,
    experts,
    patient_identifiers,
    slot_claims,
    users,
)
from hq.models import (
    consultations as consultations_table,
)

MIN_EXTRA_MINUTES = 5
MAX_EXTRA_MINUTES = 4 * 60
REASON_MAX = 2000


class BookingError(ValueError):
    """The request cannot be done as asked; the message says what was wrong (`field` names the input)."""

    status = 400

    def __init__(self, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.field = field


class SlotTaken(BookingError):
    """Someone else holds (part of) that time: nothing was booked."""

    status = 409


class NotAllowed(BookingError):
    status = 403


class NotFound(BookingError):
    status = 404


class WrongState(BookingError):
    """The appointment is no longer in a state where this can be done (e.g. already decided)."""

    status = 409


@dataclass(slots=True)
class Change:
    """What a committed change must tell the live console: (message, user ids, clinic) triples."""

    appointment: dict[str, Any]
    live: list[tuple[dict[str, Any], tuple[int, ...] | None, tuple[str, ...] | None, str | None]] = \
        field(default_factory=list)
    notices: list[int] = field(default_factory=list)  # downlink ids queued

    def tell(self, message: dict[str, Any], *, user_ids: tuple[int, ...] | None = None,
             roles: tuple[str, ...] | None = None, clinic_id: str | None = None) -> None:
        self.live.append((message, user_ids, roles, clinic_id))

    def announce(self, hub: LiveHub) -> None:
        """After the commit: the live messages to the consoles concerned."""
        for message, user_ids, roles, clinic_id in self.live:
            hub.notify(message, user_ids=user_ids, roles=roles, clinic_id=clinic_id)


# ---- reading ----------------------------------------------------------------------------------
def _joined() -> sa.Select[Any]:
    a, x, d = appointments, experts, departments
    return (sa.select(a, x.c.name.label("expert_name"), x.c.title.label("expert_title"),
                      x.c.hospital.label("hospital"), x.c.time_zone.label("expert_time_zone"),
                      x.c.user_id.label("expert_user_id"), d.c.name.label("department_name"),
                      consultations_table.c.public_id.label("consultation_public_id"))
            .join(x, x.c.id == a.c.expert_id).join(d, d.c.id == a.c.department_id)
            .outerjoin(consultations_table, consultations_table.c.id == a.c.consultation_id))


def _with_mrns(conn: sa.Connection, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Each row's patient record number at its clinic (the number the clinic knows the patient by)."""
    wanted = {r["patient_id"] for r in rows if r["patient_id"] is not None}
    mrns: dict[tuple[int, str], str] = {}
    if wanted:
        p = patient_identifiers
        for found in conn.execute(sa.select(p.c.patient_id, p.c.clinic_id, p.c.mrn)
                                  .where(p.c.patient_id.in_(wanted)).order_by(p.c.id.desc())):
            mrns[(found.patient_id, found.clinic_id)] = found.mrn
    for r in rows:
        r["patient_mrn"] = mrns.get((r["patient_id"], r["clinic_id"])) if r["patient_id"] is not None else None
    return rows


def appointment_row(conn: sa.Connection, appointment_id: int) -> dict[str, Any]:
    row = conn.execute(_joined().where(appointments.c.id == appointment_id)).mappings().first()
    if row is None:
        raise NotFound(f"no appointment {appointment_id}", "appointment_id")
    return _with_mrns(conn, [dict(row)])[0]


def list_appointments(conn: sa.Connection, actor: Actor, *, clinic_id: str | None = None,
                      expert_id: int | None = None, statuses: Sequence[str] | None = None,
                      from_ms: int | None = None, to_ms: int | None = None, limit: int = 200) -> list[dict[str, Any]]:
    """Appointments the actor may see (see `may_see`), by start time; `from_ms`: ending after it."""
    a = appointments
    q = _joined().order_by(a.c.start_ms, a.c.id).limit(limit)
    if actor.role is Role.CLINIC_STAFF:
        if clinic_id not in (None, actor.clinic_id):
            raise NotAllowed(f"clinic staff see their own clinic ({actor.clinic_id}) only", "clinic_id")
        q = q.where(a.c.clinic_id == actor.clinic_id)
    elif actor.role is Role.EXPERT:
        q = q.where(a.c.expert_id == (actor.expert_id if actor.expert_id is not None else -1))
    elif actor.role is Role.DEPARTMENT_HEAD:
        q = q.where(a.c.department_id.in_(sorted(actor.department_ids) or [-1]))
    if clinic_id is not None:
        q = q.where(a.c.clinic_id == clinic_id)
    if expert_id is not None:
        q = q.where(a.c.expert_id == expert_id)
    if statuses:
        q = q.where(a.c.status.in_(list(statuses)))
    if from_ms is not None:
        q = q.where(a.c.end_ms > from_ms)
    if to_ms is not None:
        q = q.where(a.c.start_ms < to_ms)
    return _with_mrns(conn, [dict(r) for r in conn.execute(q).mappings()])


def may_see(actor: Actor, row: dict[str, Any]) -> bool:
    """Coordinators and admins see every appointment, clinic staff their clinic's, experts their own,
    department heads their departments'."""
    if actor.role in (Role.ADMIN, Role.COORDINATOR):
        return True
    if actor.role is Role.CLINIC_STAFF:
        return bool(row["clinic_id"] == actor.clinic_id)
    if actor.role is Role.EXPERT:
        return actor.expert_id is not None and row["expert_id"] == actor.expert_id
    if actor.role is Role.DEPARTMENT_HEAD:
        return row["department_id"] in actor.department_ids
    return False


def visible(conn: sa.Connection, actor: Actor, appointment_id: int) -> dict[str, Any]:
    row = appointment_row(conn, appointment_id)
    if not may_see(actor, row):
        raise NotFound(f"no appointment {appointment_id}", "appointment_id")  # not even that it exists
    return row


# ---- the pieces of a change ------------------------------------------------------------------
def units(start_ms: int, end_ms: int) -> Iterator[int]:
    return iter(range(start_ms, end_ms, slots.UNIT_MS))


def _claim(conn: sa.Connection, expert_id: int, appointment_id: int, start_ms: int, end_ms: int) -> None:
    """Take every unit of [start_ms, end_ms) for the appointment, or raise SlotTaken (the caller's transaction
    must then roll back: on PostgreSQL it cannot continue after the refused insert)."""
    rows = [{"expert_id": expert_id, "unit_start_ms": u, "appointment_id": appointment_id}
            for u in units(start_ms, end_ms)]
    try:
        # Ascending order in every transaction: two bookings never wait for each other in a cycle.
        conn.execute(slot_claims.insert(), rows)
    except sa.exc.IntegrityError as exc:
        raise SlotTaken("that time was just booked by someone else; choose another slot", "start") from exc


def _refuse_if_held(conn: sa.Connection, expert_id: int, start_ms: int, end_ms: int,
                    except_appointment: int | None = None) -> None:
    """A quick refusal when (part of) the time is already claimed: most losers of a race for a slot end here,
    before any other work. Only a shortcut: `_claim`'s primary key is what guarantees it."""
    c = slot_claims
    q = sa.select(c.c.appointment_id).where(c.c.expert_id == expert_id, c.c.unit_start_ms >= start_ms,
                                            c.c.unit_start_ms < end_ms).limit(1)
    if except_appointment is not None:
        q = q.where(c.c.appointment_id != except_appointment)
    if conn.execute(q).first() is not None:
        raise SlotTaken("that time is booked already; choose another slot", "start")


def _release(conn: sa.Connection, appointment_id: int) -> None:
    conn.execute(slot_claims.delete().where(slot_claims.c.appointment_id == appointment_id))


def _check_times(start_ms: int, end_ms: int, now_ms: int) -> None:
    if start_ms % slots.UNIT_MS or end_ms % slots.UNIT_MS:
        raise BookingError("start and end must be on the 5-minute grid (e.g. 09:00, 09:05)", "start")
    if end_ms <= start_ms:
        raise BookingError("end must be after start", "end")
    if start_ms < now_ms:
        raise BookingError("that time has passed", "start")


def _expert(conn: sa.Connection, expert_id: int) -> dict[str, Any]:
    row = conn.execute(sa.select(experts.c.id, experts.c.name, experts.c.department_id, experts.c.active,
                                 experts.c.user_id, experts.c.time_zone)
                       .where(experts.c.id == expert_id)).mappings().first()
    if row is None:
        raise BookingError(f"no expert {expert_id}", "expert_id")
    if not row["active"]:
        raise BookingError(f"expert {expert_id} ({row['name']}) is inactive and takes no bookings", "expert_id")
    return dict(row)


def _booking_clinic(actor: Actor, clinic_id: str | None) -> str:
    if actor.role is Role.CLINIC_STAFF:
        if clinic_id not in (None, "", actor.clinic_id):
            raise NotAllowed(f"clinic staff book for their own clinic ({actor.clinic_id}) only", "clinic_id")
        assert actor.clinic_id is not None
        return actor.clinic_id
    if actor.role not in (Role.ADMIN, Role.COORDINATOR):
        raise NotAllowed(f"role {actor.role} may not book consultations (clinic staff and coordinators do)")
    if not clinic_id:
        raise BookingError("clinic_id: which clinic is the consultation for?", "clinic_id")
    return clinic_id


def _patient(conn: sa.Connection, actor: Actor, clinic_id: str, patient_id: int | None, mrn: str | None
             ) -> int | None:
    """The patient the consultation is about: by the clinic's record number, or by id if the actor may see them
    (a merged-away record stands for the record it was merged into)."""
    if mrn:
        found = records.patient_for_mrn(conn, clinic_id, mrn)
        if found is None:
            raise BookingError(f"no patient with record number {mrn!r} at clinic {clinic_id}; check the patient "
                               "in first", "mrn")
        return records.resolve(conn, found)
    if patient_id is None:
        return None
    live = records.resolve(conn, patient_id)
    if live is None or not records.may_see_patient(conn, actor, live):
        raise BookingError(f"no patient {patient_id} that you may book for", "patient_id")
    return live


def _clean_reason(reason: str | None, *, required: bool = False) -> str | None:
    text = (reason or "").strip()
    if len(text) > REASON_MAX:
        raise BookingError(f"reason: at most {REASON_MAX} characters", "reason")
    if required and not text:
        raise BookingError("reason: say why the consultation cannot wait for a published slot", "reason")
    return text or None


def _calendar(conn: sa.Connection, expert_id: int, start_ms: int, end_ms: int,
              exclude_appointment: int | None = None) -> slots.Calendar:
    cal = scheduling.calendars(conn, [expert_id], start_ms, end_ms, exclude_appointment=exclude_appointment)
    if expert_id not in cal:
        raise BookingError(f"expert {expert_id} has no usable time zone; fix their profile first", "expert_id")
    return cal[expert_id]


def _create_consultation(conn: sa.Connection, row: dict[str, Any], actor: Actor, now: int) -> str:
    consultation_id, public_id = consultations.create_scheduled(
        conn, clinic_id=row["clinic_id"], patient_id=row["patient_id"], expert_id=row["expert_id"],
        department_id=row["department_id"], requested_by_user_id=row["requested_by_user_id"] or actor.user_id,
        start_ms=row["start_ms"], now=now)
    conn.execute(appointments.update().where(appointments.c.id == row["id"]).values(consultation_id=consultation_id))
    return public_id


def _cancel_consultation(conn: sa.Connection, actor: Actor, change: Change, reason: str | None,
                         now: int) -> None:
    """The appointment's scheduled consultation cancelled with it (the appointment cancelled from the schedule):
    audited as a consultation cancel, and the consoles watching the consultation told with the change."""
    from hq import dispatching  # here: dispatching imports the consultations module, which imports this one

    appointment = change.appointment
    if appointment["consultation_id"] is None:
        return
    c = consultations_table
    why = reason or "no reason given"
    cancelled = conn.execute(
        c.update().where(c.c.id == appointment["consultation_id"], c.c.status == str(consultations.Status.SCHEDULED))
        .values(status=str(consultations.Status.CANCELLED), cancelled_ms=now, cancel_reason=why)
        .returning(*c.c)).mappings().first()
    if cancelled is None:
        return  # already under way or over: the appointment's cancel leaves it alone
    audit.record(conn, actor, "consultation.cancel", "consultation", cancelled["public_id"],
                 clinic_id=cancelled["clinic_id"], detail={"reason": why, "appointment_id": appointment["id"]})
    dispatching.notify_watchers(conn, dict(cancelled), _Telling(change), now)


class _Telling:
    """`hq.after_commit.Effects` over a `Change`: what the consultation rules notify joins the change's live
    messages (the appointment's notices already wake the downlink)."""

    downlink_queued = False

    def __init__(self, change: Change) -> None:
        self.change = change

    def notify(self, message: dict[str, Any], *, user_ids: Iterable[int] | None = None,
               roles: Iterable[str] | None = None, clinic_id: str | None = None) -> None:
        self.change.tell(message, user_ids=None if user_ids is None else tuple(user_ids),
                         roles=None if roles is None else tuple(roles), clinic_id=clinic_id)


def local_text(ms: int, zone_name: str) -> str:
    """E.g. "Mon 5 Jan 2026 09:00 CET" in `zone_name` (UTC if the zone is unknown)."""
    try:
        tz = slots.zone(zone_name)
    except slots.RuleError:
        tz = slots.zone("UTC")
    t = datetime.fromtimestamp(ms / 1000, UTC).astimezone(tz)
    return f"{t:%a} {t.day} {t:%b %Y %H:%M %Z}"


def notice_of(kind: str, row: dict[str, Any], *, previous_start_ms: int | None = None,
              note: str | None = None) -> aw.AppointmentNotice:
    # The clinic's screen shows the times in the clinic's zone; the text names the expert's own.
    who = row["expert_name"]
    when = f"{local_text(row['start_ms'], row['expert_time_zone'])} (the expert's time)"
    texts = {
        aw.NOTICE_CONFIRMED: f"Consultation with {who} booked for {when}.",
        aw.NOTICE_PENDING: f"Urgent extra slot with {who} at {when} asked for; waiting for the department head.",
        aw.NOTICE_REJECTED: f"Urgent extra slot with {who} at {when} was not approved.",
        aw.NOTICE_RESCHEDULED: f"Consultation with {who} moved to {when}.",
        aw.NOTICE_CANCELLED: f"Consultation with {who} at {when} was cancelled.",
        aw.NOTICE_REMINDER: f"Reminder: consultation with {who} at {when}.",
    }
    return aw.AppointmentNotice(
        kind, row["id"], row["status"], row["start_ms"], row["end_ms"], who, row["expert_title"] or "",
        row["hospital"] or "", row["department_name"] or "", row["expert_time_zone"] or "UTC",
        row["consultation_public_id"], row["patient_mrn"], bool(row["urgent_extra"]), texts[kind],
        previous_start_ms, note)


def _notify(conn: sa.Connection, change: Change, kind: str, *, previous_start_ms: int | None = None,
            note: str | None = None) -> None:
    """The notice to the clinic's gateway(s), and the live message to the clinic's and the expert's consoles."""
    row = change.appointment
    notice = notice_of(kind, row, previous_start_ms=previous_start_ms, note=note)
    change.notices += downlink.send_to_clinic(conn, row["clinic_id"], kind, notice.body())
    message = {"type": "appointment", "event": kind, "appointment": appointment_json(row),
               "text": notice.text, "gateway_notices": len(change.notices)}
    change.tell(message, roles=(str(Role.CLINIC_STAFF), str(Role.COORDINATOR)), clinic_id=row["clinic_id"])
    if row["expert_user_id"] is not None:
        change.tell(message, user_ids=(int(row["expert_user_id"]),))


def heads_of(conn: sa.Connection, department_id: int) -> list[int]:
    h = department_heads
    return [int(u) for u in conn.execute(
        sa.select(h.c.user_id).join(users, users.c.id == h.c.user_id)
        .where(h.c.department_id == department_id, users.c.active.is_(True))).scalars()]


def appointment_json(row: dict[str, Any]) -> dict[str, Any]:
    return {
        "appointment_id": row["id"], "status": row["status"], "urgent_extra": bool(row["urgent_extra"]),
        "expert": {"expert_id": row["expert_id"], "name": row["expert_name"], "title": row["expert_title"],
                   "hospital": row["hospital"], "time_zone": row["expert_time_zone"]},
        "department": {"department_id": row["department_id"], "name": row["department_name"]},
        "clinic_id": row["clinic_id"], "patient_id": row["patient_id"], "patient_mrn": row["patient_mrn"],
        "consultation_id": row["consultation_public_id"],
        "start": iso_from_ms(row["start_ms"]), "end": iso_from_ms(row["end_ms"]),
        "start_ms": row["start_ms"], "end_ms": row["end_ms"],
        "expert_local_start": local_text(row["start_ms"], row["expert_time_zone"]),
        "reason": row["reason"], "created": iso_from_ms(row["created_ms"]),
        "confirmed": iso_from_ms(row["confirmed_ms"]), "reminded": iso_from_ms(row["reminded_ms"]),
        "decided": iso_from_ms(row["decided_ms"]), "decided_by_user_id": row["decided_by_user_id"],
        "decision_note": row["decision_note"], "cancelled": iso_from_ms(row["cancelled_ms"]),
        "cancel_reason": row["cancel_reason"],
    }


def _insert(conn: sa.Connection, *, expert: dict[str, Any], clinic_id: str, patient_id: int | None, start_ms: int,
            end_ms: int, status: str, urgent: bool, reason: str | None, actor: Actor, now: int) -> int:
    result = conn.execute(appointments.insert().values(
        expert_id=expert["id"], department_id=expert["department_id"], start_ms=start_ms, end_ms=end_ms,
        clinic_id=clinic_id, patient_id=patient_id, status=status, urgent_extra=urgent, reason=reason,
        requested_by_user_id=actor.user_id, created_ms=now, updated_ms=now))
    return int(result.inserted_primary_key[0])  # type: ignore[index]


# ---- the changes ----------------------------------------------------------------------------
def book(conn: sa.Connection, actor: Actor, *, expert_id: int, start_ms: int, end_ms: int, now: int,
         clinic_id: str | None = None, patient_id: int | None = None, mrn: str | None = None,
         reason: str | None = None) -> Change:
    """Book one of the expert's published free slots for a clinic: the appointment, its slot claims, the
    routine consultation, the audit entry and the confirmation to the clinic's gateway, or nothing."""
    clinic = _booking_clinic(actor, clinic_id)
    _check_times(start_ms, end_ms, now)
    _refuse_if_held(conn, expert_id, start_ms, end_ms)
    expert = _expert(conn, expert_id)
    reason = _clean_reason(reason)
    patient = _patient(conn, actor, clinic, patient_id, mrn)
    if not slots.published_slot(_calendar(conn, expert_id, start_ms, end_ms), start_ms, end_ms):
        raise BookingError("that is not one of the expert's published slots (hours, slot length, leave or "
                           "clinic duty changed?): ask for proposals again, or request an urgent extra slot",
                           "start")
    appointment_id = _insert(conn, expert=expert, clinic_id=clinic, patient_id=patient, start_ms=start_ms,
                             end_ms=end_ms, status="booked", urgent=False, reason=reason, actor=actor, now=now)
    _claim(conn, expert_id, appointment_id, start_ms, end_ms)
    _create_consultation(conn, appointment_row(conn, appointment_id), actor, now)
    change = Change(appointment_row(conn, appointment_id))
    audit.record(conn, actor, "appointment.book", "appointment", appointment_id, clinic_id=clinic,
                 detail={"expert_id": expert_id, "start_ms": start_ms, "end_ms": end_ms, "patient_id": patient,
                         "consultation": change.appointment["consultation_public_id"]})
    _notify(conn, change, aw.NOTICE_CONFIRMED)
    return change


def request_extra(conn: sa.Connection, actor: Actor, *, expert_id: int, start_ms: int, end_ms: int, now: int,
                  reason: str | None, clinic_id: str | None = None, patient_id: int | None = None,
                  mrn: str | None = None) -> Change:
    """An urgent extra slot outside the expert's published availability (or during an exception): it holds
    its time at once (no one else can book it) and waits for a head of the expert's department."""
    clinic = _booking_clinic(actor, clinic_id)
    _check_times(start_ms, end_ms, now)
    minutes = (end_ms - start_ms) // slots.MINUTE_MS
    if not MIN_EXTRA_MINUTES <= minutes <= MAX_EXTRA_MINUTES:
        raise BookingError(f"an extra slot lasts {MIN_EXTRA_MINUTES} to {MAX_EXTRA_MINUTES} minutes, not {minutes}",
                           "end")
    _refuse_if_held(conn, expert_id, start_ms, end_ms)
    expert = _expert(conn, expert_id)
    text = _clean_reason(reason, required=True)
    patient = _patient(conn, actor, clinic, patient_id, mrn)
    if slots.within_published_hours(_calendar(conn, expert_id, start_ms, end_ms), start_ms, end_ms):
        raise BookingError("that time is inside the expert's published hours: book one of its slots instead of "
                           "an extra slot", "start")
    appointment_id = _insert(conn, expert=expert, clinic_id=clinic, patient_id=patient, start_ms=start_ms,
                             end_ms=end_ms, status="pending_approval", urgent=True, reason=text, actor=actor,
                             now=now)
    _claim(conn, expert_id, appointment_id, start_ms, end_ms)
    change = Change(appointment_row(conn, appointment_id))
    audit.record(conn, actor, "appointment.extra_requested", "appointment", appointment_id, clinic_id=clinic,
                 detail={"expert_id": expert_id, "start_ms": start_ms, "end_ms": end_ms, "patient_id": patient,
                         "reason": text})
    _notify(conn, change, aw.NOTICE_PENDING)
    heads = heads_of(conn, expert["department_id"])
    if heads:
        change.tell({"type": "appointment", "event": "approval_needed",
                     "appointment": appointment_json(change.appointment),
                     "text": f"Urgent extra slot for {expert['name']} asks for your approval."},
                    user_ids=tuple(heads))
    return change


def decide_extra(conn: sa.Connection, actor: Actor, appointment_id: int, *, approve: bool, now: int,
                 note: str | None = None) -> Change:
    """A head of the appointment's department approves (booked, with its consultation and confirmation) or
    rejects (its time is released) an urgent extra slot. Only heads of that department: not other heads, not
    coordinators, not admins (an approval is a clinical decision of the department)."""
    row = appointment_row(conn, appointment_id)
    if row["department_id"] not in actor.department_ids:
        raise NotAllowed(f"you do not head the {row['department_name']} department, which this slot belongs to")
    text = _clean_reason(note)
    a = appointments
    status = "booked" if approve else "rejected"
    # The WHERE re-checks the state: of two heads deciding at once, one wins and the other is told.
    won = conn.execute(a.update().where(a.c.id == appointment_id, a.c.status == "pending_approval").values(
        status=status, decided_by_user_id=actor.user_id, decided_ms=now, decision_note=text, updated_ms=now)
    ).rowcount
    if not won:
        raise WrongState(f"appointment {appointment_id} is {row['status']}, not waiting for approval")
    if approve:
        _create_consultation(conn, appointment_row(conn, appointment_id), actor, now)
    else:
        _release(conn, appointment_id)
    change = Change(appointment_row(conn, appointment_id))
    audit.record(conn, actor, "appointment.extra_approved" if approve else "appointment.extra_rejected",
                 "appointment", appointment_id, clinic_id=row["clinic_id"],
                 detail={"department_id": row["department_id"], "note": text})
    _notify(conn, change, aw.NOTICE_CONFIRMED if approve else aw.NOTICE_REJECTED, note=text)
    return change


def _may_change(actor: Actor, row: dict[str, Any], *, expert_too: bool) -> None:
    if actor.role in (Role.ADMIN, Role.COORDINATOR):
        return
    if actor.role is Role.CLINIC_STAFF and row["clinic_id"] == actor.clinic_id:
        return
    if expert_too and actor.role is Role.EXPERT and actor.expert_id == row["expert_id"]:
        return
    raise NotAllowed("the clinic that booked it, or a coordinator, may change this appointment"
                     + (" (or its expert cancel it)" if expert_too else ""))


def cancel(conn: sa.Connection, actor: Actor, appointment_id: int, *, now: int, reason: str | None = None) -> Change:
    """Cancel a booked or pending appointment (its clinic, a coordinator, or its expert): the time is free
    again, the consultation is cancelled, the clinic's gateway is told."""
    row = visible(conn, actor, appointment_id)
    _may_change(actor, row, expert_too=True)
    text = _clean_reason(reason)
    change = _cancel(conn, actor, row, now=now, text=text)
    _cancel_consultation(conn, actor, change, text, now)
    return change


def cancel_booking_of(conn: sa.Connection, actor: Actor, consultation_id: int, *, now: int,
                      reason: str | None) -> Change | None:
    """Cancel the booked or pending appointment of a scheduled consultation, for
    `hq.consultations.cancel_scheduled` (which checked who may, and cancels the consultation itself): the time
    is free again, the clinic's gateway is told. None when the consultation holds no appointment."""
    a = appointments
    found = conn.execute(sa.select(a.c.id).where(a.c.consultation_id == consultation_id,
                                                 a.c.status.in_(scheduling.ACTIVE_STATUSES))).scalar()
    if found is None:
        return None
    return _cancel(conn, actor, appointment_row(conn, int(found)), now=now, text=_clean_reason(reason))


def _cancel(conn: sa.Connection, actor: Actor, row: dict[str, Any], *, now: int, text: str | None) -> Change:
    a = appointments
    done = conn.execute(a.update().where(a.c.id == row["id"], a.c.status.in_(scheduling.ACTIVE_STATUSES))
                        .values(status="cancelled", cancelled_by_user_id=actor.user_id, cancelled_ms=now,
                                cancel_reason=text, updated_ms=now)).rowcount
    if not done:
        raise WrongState(f"appointment {row['id']} is {row['status']}: nothing to cancel")
    _release(conn, row["id"])
    change = Change(appointment_row(conn, row["id"]))
    audit.record(conn, actor, "appointment.cancel", "appointment", row["id"], clinic_id=row["clinic_id"],
                 detail={"reason": text, "was": row["status"]})
    _notify(conn, change, aw.NOTICE_CANCELLED, note=text)
    return change


def reschedule(conn: sa.Connection, actor: Actor, appointment_id: int, *, start_ms: int, end_ms: int,
               now: int) -> Change:
    """Move a booked appointment to another published free slot of the same expert, in one transaction: the
    new time is claimed before the old is let go, so a failure leaves the old booking as it was."""
    row = visible(conn, actor, appointment_id)
    _may_change(actor, row, expert_too=False)
    if row["status"] != "booked" or row["urgent_extra"]:
        raise WrongState(f"appointment {appointment_id} is {row['status']}"
                         + (" (an urgent extra slot: cancel it and ask again)" if row["urgent_extra"] else "")
                         + "; only booked routine appointments are moved")
    _check_times(start_ms, end_ms, now)
    if (start_ms, end_ms) == (row["start_ms"], row["end_ms"]):
        raise BookingError("that is the appointment's current time", "start")
    _refuse_if_held(conn, row["expert_id"], start_ms, end_ms, except_appointment=appointment_id)
    cal = _calendar(conn, row["expert_id"], start_ms, end_ms, exclude_appointment=appointment_id)
    if not slots.published_slot(cal, start_ms, end_ms):
        raise BookingError("that is not one of the expert's published slots: ask for proposals again", "start")
    a = appointments
    # Taking the row first serialises two moves of the same appointment.
    moved = conn.execute(a.update().where(a.c.id == appointment_id, a.c.status == "booked",
                                          a.c.start_ms == row["start_ms"])
                         .values(start_ms=start_ms, end_ms=end_ms, confirmed_ms=None, reminded_ms=None,
                                 updated_ms=now)).rowcount
    if not moved:
        raise WrongState(f"appointment {appointment_id} changed meanwhile; reload it")
    _release(conn, appointment_id)
    _claim(conn, row["expert_id"], appointment_id, start_ms, end_ms)
    if row["consultation_id"] is not None:
        c = consultations_table
        conn.execute(c.update().where(c.c.id == row["consultation_id"]).values(scheduled_ms=start_ms))
    change = Change(appointment_row(conn, appointment_id))
    audit.record(conn, actor, "appointment.reschedule", "appointment", appointment_id, clinic_id=row["clinic_id"],
                 detail={"from_start_ms": row["start_ms"], "from_end_ms": row["end_ms"], "start_ms": start_ms,
                         "end_ms": end_ms})
    _notify(conn, change, aw.NOTICE_RESCHEDULED, previous_start_ms=row["start_ms"])
    return change


def remind_due(conn: sa.Connection, *, now: int, lead_ms: int, limit: int = 100) -> list[Change]:
    """Reminders for booked appointments starting within `lead_ms`: each marked once (the UPDATE's WHERE
    re-checks, so concurrent HQ workers never remind twice), queued to the clinic, shown to the expert."""
    a = appointments
    due = list(conn.execute(sa.select(a.c.id).where(
        a.c.status == "booked", a.c.reminded_ms.is_(None), a.c.start_ms > now, a.c.start_ms <= now + lead_ms)
        .order_by(a.c.start_ms).limit(limit)).scalars())
    changes = []
    for appointment_id in due:
        if not conn.execute(a.update().where(a.c.id == appointment_id, a.c.reminded_ms.is_(None))
                            .values(reminded_ms=now)).rowcount:
            continue
        change = Change(appointment_row(conn, appointment_id))
        audit.record(conn, "system", "appointment.remind", "appointment", appointment_id,
                     clinic_id=change.appointment["clinic_id"], detail={"start_ms": change.appointment["start_ms"]})
        _notify(conn, change, aw.NOTICE_REMINDER)
        changes.append(change)
    return changes


def mark_confirmed(conn: sa.Connection, appointment_id: int, *, start_ms: int, at_ms: int,
                   gateway_id: str) -> dict[str, Any] | None:
    """The clinic's gateway confirmed it has the booking at `start_ms` (a receipt of a confirming notice);
    a receipt for a time the appointment has since left confirms nothing. Returns the updated row or None."""
    a = appointments
    done = conn.execute(a.update().where(a.c.id == appointment_id, a.c.start_ms == start_ms,
                                         a.c.status == "booked", a.c.confirmed_ms.is_(None))
                        .values(confirmed_ms=at_ms)).rowcount
    if not done:
        return None
    row = appointment_row(conn, appointment_id)
    audit.record(conn, f"gateway:{gateway_id}", "appointment.delivered", "appointment", appointment_id,
                 clinic_id=row["clinic_id"], detail={"start_ms": start_ms})
    return row


def double_bookings(conn: sa.Connection) -> int:
    """Pairs of active appointments of one expert whose times overlap: what the slot claims make impossible,
    counted from the appointments alone (an independent check for tests, benchmarks and operators)."""
    a, b = appointments.alias("a"), appointments.alias("b")
    active = scheduling.ACTIVE_STATUSES
    return int(conn.execute(sa.select(sa.func.count()).select_from(a).join(b, sa.and_(
        a.c.expert_id == b.c.expert_id, a.c.id < b.c.id, a.c.start_ms < b.c.end_ms, b.c.start_ms < a.c.end_ms))
        .where(a.c.status.in_(active), b.c.status.in_(active))).scalar_one())
