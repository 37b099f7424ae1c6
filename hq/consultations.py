"""Consultations: their vocabulary (kinds, statuses, session stages) and the rules that create and move them,
as plain functions over a connection in the caller's transaction.

Not the dispatch state machine (pure, `hq.dispatch`) nor its database side (`hq.dispatching`), not pages.

Kinds: routine (booked in a slot, or requested for the next expert who takes it), urgent, emergency.
Statuses, in the order a consultation usually passes them:
    scheduled    a routine consultation booked in an expert's slot (`create_scheduled`, from scheduling)
    requested    asked for, not yet offered to anyone (e.g. no expert matched yet)
    dispatching  offered to the current round's experts; the first to accept takes it
    escalated    a round went unanswered: offered to the next round and the on-call coordinators told
    accepted     an expert took it (`expert_id`, `accepted_ms`)
    in_session   the session runs (`stage`: identity_check -> case_presentation -> discussion -> opinion)
    reported     the expert issued the report (it went to the clinic)
    closed       finished; the clinic may still rate it and record whether the advice was adopted
    cancelled    withdrawn before it was done (`cancel_reason`)
"""

from __future__ import annotations

import enum
import uuid

import sqlalchemy as sa

from hq.clock import now_ms
from hq.models import consultations


class Kind(enum.StrEnum):
    ROUTINE = "routine"
    URGENT = "urgent"
    EMERGENCY = "emergency"


class Status(enum.StrEnum):
    SCHEDULED = "scheduled"
    REQUESTED = "requested"
    DISPATCHING = "dispatching"
    ESCALATED = "escalated"
    ACCEPTED = "accepted"
    IN_SESSION = "in_session"
    REPORTED = "reported"
    CLOSED = "closed"
    CANCELLED = "cancelled"


class Stage(enum.StrEnum):
    IDENTITY_CHECK = "identity_check"
    CASE_PRESENTATION = "case_presentation"
    DISCUSSION = "discussion"
    OPINION = "opinion"


STAGES = tuple(Stage)
OPEN_FOR_OFFERS = (Status.REQUESTED, Status.DISPATCHING, Status.ESCALATED)  # nobody has taken it yet
TAKEN = (Status.ACCEPTED, Status.IN_SESSION, Status.REPORTED)  # an expert works on it
FINISHED = (Status.CLOSED, Status.CANCELLED)


def new_public_id() -> str:
    """The id a consultation is known by outside HQ (URLs, the gateway); gateways make theirs the same way."""
    return uuid.uuid4().hex


def create_scheduled(conn: sa.Connection, *, clinic_id: str, patient_id: int | None, expert_id: int,
                     department_id: int | None, requested_by_user_id: int | None, start_ms: int,
                     now: int | None = None) -> tuple[int, str]:
    """The consultation of a routine booking, in the caller's transaction: kind routine, status scheduled,
    the expert already known, `requested_ms` the booking time. Returns (id, public_id).

    The caller (the booking) records the audit entry; the appointment row points at this consultation.
    """
    at = now_ms() if now is None else now
    public_id = new_public_id()
    result = conn.execute(consultations.insert().values(
        public_id=public_id, kind=str(Kind.ROUTINE), status=str(Status.SCHEDULED), clinic_id=clinic_id,
        patient_id=patient_id, department_id=department_id, requested_expert_id=expert_id, expert_id=expert_id,
        requested_by_user_id=requested_by_user_id, requested_ms=at, received_ms=at, scheduled_ms=start_ms))
    return int(result.inserted_primary_key[0]), public_id  # type: ignore[index]
