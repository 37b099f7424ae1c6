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
from collections.abc import Mapping, Sequence
from typing import Any

import sqlalchemy as sa

from gateway import consultation_wire as cw
from hq import advice, audit, dispatching, records, reports
from hq.after_commit import Effects
from hq.auth import Actor, Role
from hq.clock import iso_from_ms, now_ms
from hq.config import ConsultationsSection
from hq.consultation_views import FORM_FIELDS, names
from hq.models import advice_items, consultation_messages, consultations, dispatch_offers, observations, patients
from hq.models import reports as reports_table

FORM_TEXT_MAX = 4000


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


# ---- reading and reach ------------------------------------------------------------------------------
class ConsultationError(ValueError):
    """A request about a consultation that cannot be done; the message names the field or the reason."""


class NotAllowed(Exception):
    """The actor may not do this to this consultation (403)."""


def get(conn: sa.Connection, public_id: str) -> dict[str, Any] | None:
    row = conn.execute(sa.select(consultations).where(consultations.c.public_id == public_id)).mappings().first()
    return None if row is None else dict(row)


def offered_to(conn: sa.Connection, consultation_id: int, expert_id: int) -> str | None:
    d = dispatch_offers
    return conn.execute(sa.select(d.c.outcome).where(d.c.consultation_id == consultation_id,
                                                     d.c.expert_id == expert_id)).scalar()


def may_see(conn: sa.Connection, actor: Actor, row: Mapping[str, Any]) -> bool:
    """Chain-wide staff: all; clinic staff: their clinic's; experts: theirs, or one offered to them now."""
    if actor.sees_all_clinics:
        return True
    if actor.role is Role.CLINIC_STAFF:
        return bool(actor.clinic_id == row["clinic_id"])
    if actor.role is Role.EXPERT and actor.expert_id is not None:
        return bool(row["expert_id"] == actor.expert_id or offered_to(conn, row["id"], actor.expert_id) == "pending")
    return False


def _require_expert_of(actor: Actor, row: Mapping[str, Any]) -> None:
    if actor.role is Role.ADMIN:
        return
    if actor.role is not Role.EXPERT or actor.expert_id is None or row["expert_id"] != actor.expert_id:
        raise NotAllowed("only the expert who accepted the consultation may do this")


def _require_clinic_side(actor: Actor, row: Mapping[str, Any]) -> None:
    if actor.sees_all_clinics or (actor.role is Role.CLINIC_STAFF and actor.clinic_id == row["clinic_id"]):
        return
    raise NotAllowed("only the clinic's staff or a coordinator may do this")


def _who(actor: Actor | str) -> str:
    return actor if isinstance(actor, str) else actor.display_name


# ---- creating ---------------------------------------------------------------------------------------
def hq_vitals(conn: sa.Connection, clinic_id: str, mrns: Sequence[str], since_ms: int) -> list[dict[str, Any]]:
    """HQ's own newest reading of each metric of these patients (device patient ids at the clinic)."""
    o = observations
    found: dict[tuple[str, str], dict[str, Any]] = {}
    for mrn in list(dict.fromkeys(mrns))[:5]:
        rows = conn.execute(sa.select(o.c.metric, o.c.value, o.c.unit, o.c.time_ms, o.c.device_id, o.c.patient_id)
                            .where(o.c.patient_id == mrn, o.c.clinic_id == clinic_id, o.c.kind == "observation",
                                   o.c.time_ms >= since_ms).order_by(o.c.time_ms.desc()).limit(500)).mappings()
        for r in rows:
            found.setdefault((mrn, r["metric"]), {**dict(r), "source": "hq"})
    return sorted(found.values(), key=lambda v: (v["patient_id"], v["metric"]))


def _is_placeholder(conn: sa.Connection, row: Mapping[str, Any]) -> bool:
    """A row made by a short form that reached HQ before its emergency (see `receive_form`)."""
    return bool(row["status"] == Status.REQUESTED and row["escalation_round"] == 0 and row["coordinators_notified_ms"]
            is None and conn.execute(sa.select(dispatch_offers.c.id).where(
                dispatch_offers.c.consultation_id == row["id"])).first() is None)


def create(conn: sa.Connection, *, kind: str, clinic_id: str, config: ConsultationsSection, effects: Effects,
           now: int, actor: Actor | str, public_id: str | None = None, gateway_id: str | None = None,
           patient_id: int | None = None, mrn: str | None = None, department_id: int | None = None,
           requested_expert_id: int | None = None, tags: Sequence[str] = (), language: str | None = None,
           form: Mapping[str, str | None] | None = None, requested_ms: int | None = None,
           gateway_vitals: Sequence[dict[str, Any]] = ()) -> dict[str, Any]:
    """A new consultation, with the vitals of the moment attached, dispatched to the first round at once.
    Idempotent on `public_id` (a gateway's event may arrive twice)."""
    if kind not in tuple(Kind):
        raise ConsultationError(f"kind: {kind!r}; expected one of {', '.join(Kind)}")
    form = {f: (form or {}).get(f) or None for f in FORM_FIELDS}
    existing = get(conn, public_id) if public_id else None
    if existing is not None and not _is_placeholder(conn, existing):
        return existing
    if patient_id is None and mrn:
        patient_id, _created = records.provisional_patient(conn, clinic_id, mrn, now=now)
    mrns = [mrn] if mrn else [str(v["patient_id"]) for v in gateway_vitals if v.get("patient_id")]
    vitals = {"gateway": [dict(v) for v in gateway_vitals],
              "hq": hq_vitals(conn, clinic_id, mrns, now - config.vitals_window_s * 1000)}
    asked_ms = now if requested_ms is None else requested_ms
    has_form = any(form.values()) or (existing is not None and existing["form_received_ms"] is not None)
    values: dict[str, Any] = dict(
        kind=kind, status=str(Status.REQUESTED), clinic_id=clinic_id, gateway_id=gateway_id, patient_id=patient_id,
        department_id=department_id, requested_expert_id=requested_expert_id,
        requested_by_user_id=None if isinstance(actor, str) else actor.user_id, requested_by=_who(actor),
        tags=list(tags) or None, language=language, requested_ms=asked_ms, received_ms=now, vitals=vitals,
        form_due_ms=None if has_form or kind != Kind.EMERGENCY else asked_ms + int(config.form_deadline_s * 1000))
    if any(form.values()):
        values.update(form, form_received_ms=now)
    if existing is None:
        consultation_id = int(conn.execute(consultations.insert().values(
            public_id=public_id or new_public_id(), **values)).inserted_primary_key[0])  # type: ignore[index]
    else:
        consultation_id = existing["id"]
        values = {k: v for k, v in values.items() if k not in FORM_FIELDS and k != "form_received_ms"}
        conn.execute(consultations.update().where(consultations.c.id == consultation_id).values(**values))
    row = dict(conn.execute(sa.select(consultations).where(consultations.c.id == consultation_id)).mappings().one())
    audit.record(conn, actor, "consultation.request", "consultation", row["public_id"], clinic_id=clinic_id,
                 detail={"kind": kind, "patient_id": patient_id, "department_id": department_id,
                         "expert_id": requested_expert_id, "gateway_id": gateway_id})
    return dispatching.start(conn, row, config, effects, now)


# ---- the short form -----------------------------------------------------------------------------------
def submit_form(conn: sa.Connection, row: Mapping[str, Any], fields: Mapping[str, Any], *, effects: Effects,
                now: int, actor: Actor | str) -> dict[str, Any]:
    values = {}
    for name in FORM_FIELDS:
        value = fields.get(name)
        if value is not None and not isinstance(value, str):
            raise ConsultationError(f"{name}: expected text")
        if value is not None and len(value) > FORM_TEXT_MAX:
            raise ConsultationError(f"{name}: at most {FORM_TEXT_MAX} characters")
        values[name] = (value or "").strip() or None
    if not any(values.values()):
        raise ConsultationError("chief_complaint, preliminary_diagnosis, question: give at least one")
    if row["status"] in FINISHED:
        raise ConsultationError(f"status: the consultation is {row['status']}")
    conn.execute(consultations.update().where(consultations.c.id == row["id"])
                 .values(**values, form_received_ms=now))
    audit.record(conn, actor, "consultation.form", "consultation", row["public_id"], clinic_id=row["clinic_id"])
    new = _reload(conn, row["id"])
    dispatching.notify_watchers(conn, new, effects, now)
    return new


def receive_form(conn: sa.Connection, form: cw.ShortForm, *, clinic_id: str, gateway_id: str, effects: Effects,
                 now: int) -> dict[str, Any]:
    """The short form from the clinic's screen. One that overtook its emergency on the way makes the
    consultation's row; the emergency then fills it in and dispatches it."""
    row = get(conn, form.public_id)
    if row is None:
        conn.execute(consultations.insert().values(
            public_id=form.public_id, kind=form.kind, status=str(Status.REQUESTED), clinic_id=clinic_id,
            gateway_id=gateway_id, requested_ms=form.submitted_ms, received_ms=now))
        row = get(conn, form.public_id)
        assert row is not None
    elif row["clinic_id"] != clinic_id:
        raise ConsultationError(f"public_id: consultation {form.public_id} belongs to another clinic")
    return submit_form(conn, row, {"chief_complaint": form.chief_complaint, "question": form.question,
                                   "preliminary_diagnosis": form.preliminary_diagnosis},
                       effects=effects, now=now, actor=f"gateway:{gateway_id}")


def flag_overdue_forms(conn: sa.Connection, config: ConsultationsSection, effects: Effects, now: int) -> int:
    """Mark emergencies whose short form is past its deadline (once) and tell the coordinators and the clinic."""
    c = consultations
    rows = [dict(r) for r in conn.execute(sa.select(c).where(
        c.c.form_due_ms <= now, c.c.form_received_ms.is_(None), c.c.form_overdue_ms.is_(None),
        c.c.status.not_in([str(s) for s in FINISHED])).limit(100)).mappings()]
    for row in rows:
        if conn.execute(c.update().where(c.c.id == row["id"], c.c.form_overdue_ms.is_(None))
                        .values(form_overdue_ms=now)).rowcount != 1:
            continue
        new = _reload(conn, row["id"])
        view = dispatching.notify_watchers(conn, new, effects, now)
        effects.notify({"type": "consultation.form_overdue", "consultation": view},
                       user_ids=dispatching.coordinator_user_ids(conn, config))
        dispatching.notify_clinic(conn, new, cw.NOTICE_UPDATE, {
            "status": new["status"], "kind": new["kind"], "form_due_ms": new["form_due_ms"],
            "text": "The details (chief complaint, question) are overdue: please send them"}, effects)
        audit.record(conn, "system", "consultation.form_overdue", "consultation", row["public_id"],
                     clinic_id=row["clinic_id"])
    return len(rows)


# ---- the session ----------------------------------------------------------------------------------------
def _reload(conn: sa.Connection, consultation_id: int) -> dict[str, Any]:
    return dict(conn.execute(sa.select(consultations).where(consultations.c.id == consultation_id)).mappings().one())


def _system_message(conn: sa.Connection, row: Mapping[str, Any], text: str, now: int,
                    effects: Effects) -> None:
    post(conn, row, "system", text, now=now, effects=effects, kind="stage")


def set_stage(conn: sa.Connection, row: Mapping[str, Any], stage: str, *, actor: Actor, effects: Effects,
              now: int) -> dict[str, Any]:
    """Start the session (at the identity check) or move it on to a later stage, in order."""
    _require_expert_of(actor, row)
    try:
        wanted = Stage(stage)
    except ValueError:
        raise ConsultationError(f"stage: {stage!r}; expected one of {', '.join(STAGES)}") from None
    if row["status"] not in (Status.ACCEPTED, Status.IN_SESSION):
        raise ConsultationError(f"status: the session cannot move on while the consultation is {row['status']}")
    current = STAGES.index(Stage(row["stage"])) if row["stage"] else -1
    if STAGES.index(wanted) <= current:
        raise ConsultationError(f"stage: the session is already at {row['stage']}; stages go "
                                f"{' -> '.join(STAGES)}")
    values: dict[str, Any] = {"stage": str(wanted), "status": str(Status.IN_SESSION)}
    if row["started_ms"] is None:
        values["started_ms"] = now
    conn.execute(consultations.update().where(consultations.c.id == row["id"]).values(**values))
    audit.record(conn, actor, "consultation.stage", "consultation", row["public_id"], clinic_id=row["clinic_id"],
                 detail={"stage": str(wanted)})
    new = _reload(conn, row["id"])
    _system_message(conn, new, f"Stage: {wanted.replace('_', ' ')}", now, effects)
    if row["status"] == Status.ACCEPTED:
        dispatching.notify_clinic(conn, new, cw.NOTICE_UPDATE, {
            "status": new["status"], "kind": new["kind"], "text": f"In session with {_who(actor)}"}, effects)
    dispatching.notify_watchers(conn, new, effects, now)
    return new


def message_json(row: Mapping[str, Any] | sa.RowMapping) -> dict[str, Any]:
    return {"id": row["id"], "author": row["author"], "kind": row["kind"], "body": row["body"],
            "at": iso_from_ms(row["at_ms"])}


def post(conn: sa.Connection, row: Mapping[str, Any], actor: Actor | str, body: str, *, now: int,
         effects: Effects, kind: str = "chat") -> dict[str, Any]:
    """A chat message in the session, live to everyone in it (the expert, the clinic, the coordinators)."""
    text = (body or "").strip()
    if not text or len(text) > FORM_TEXT_MAX:
        raise ConsultationError(f"body: expected 1-{FORM_TEXT_MAX} characters of text")
    if row["status"] in FINISHED:
        raise ConsultationError(f"status: the consultation is {row['status']}")
    m = consultation_messages
    message_id = conn.execute(m.insert().values(
        consultation_id=row["id"], author_user_id=None if isinstance(actor, str) else actor.user_id,
        author=_who(actor), kind=kind, body=text, at_ms=now)).inserted_primary_key[0]  # type: ignore[index]
    message = message_json(conn.execute(sa.select(m).where(m.c.id == message_id)).mappings().one())
    live = {"type": "consultation.message", "public_id": row["public_id"], "message": message}
    effects.notify(live, roles=("coordinator",))
    effects.notify(live, roles=("clinic_staff",), clinic_id=row["clinic_id"])
    taker = dispatching.expert_user(conn, row["expert_id"])
    if taker is not None:
        effects.notify(live, user_ids=[taker])
    if kind == "chat" and not isinstance(actor, str):
        audit.record(conn, actor, "consultation.message", "consultation", row["public_id"],
                     clinic_id=row["clinic_id"])
    return message


def messages(conn: sa.Connection, consultation_id: int, limit: int = 500) -> list[dict[str, Any]]:
    m = consultation_messages
    rows = conn.execute(sa.select(m).where(m.c.consultation_id == consultation_id)
                        .order_by(m.c.at_ms, m.c.id).limit(limit)).mappings()
    return [message_json(r) for r in rows]


# ---- advice and the report ---------------------------------------------------------------------------------
def save_advice(conn: sa.Connection, row: Mapping[str, Any], items: Any, *, actor: Actor,
                now: int) -> list[dict[str, Any]]:
    """Replace the consultation's structured advice with `items` (validated by `hq.advice`)."""
    _require_expert_of(actor, row)
    if row["status"] not in TAKEN:
        raise ConsultationError(f"status: advice is written once the consultation is accepted, not {row['status']}")
    try:
        checked = advice.validate(items)
    except advice.AdviceError as exc:
        raise ConsultationError(str(exc)) from exc
    a = advice_items
    conn.execute(a.delete().where(a.c.consultation_id == row["id"]))
    if checked:
        conn.execute(a.insert(), [{"consultation_id": row["id"], "position": i, "kind": str(item.kind),
                                   "body": item.body} for i, item in enumerate(checked)])
    audit.record(conn, actor, "consultation.advice", "consultation", row["public_id"], clinic_id=row["clinic_id"],
                 detail={"items": len(checked)})
    return advice_of(conn, row["id"])


def advice_of(conn: sa.Connection, consultation_id: int) -> list[dict[str, Any]]:
    a = advice_items
    return [{"kind": r.kind, "body": r.body} for r in conn.execute(
        sa.select(a.c.kind, a.c.body).where(a.c.consultation_id == consultation_id).order_by(a.c.position))]


def report_data(conn: sa.Connection, row: Mapping[str, Any], *, version: int, opinion: str | None,
                now: int) -> reports.ReportData:
    n = names(conn, row)
    patient = conn.execute(sa.select(patients).where(patients.c.id == row["patient_id"])).mappings().first() \
        if row["patient_id"] is not None else None
    vitals = row["vitals"] or {}
    return reports.ReportData(
        public_id=row["public_id"], version=version, kind=row["kind"], clinic=n["clinic"], created_ms=now,
        requested_ms=row["requested_ms"], accepted_ms=row["accepted_ms"], expert_name=n["expert"] or "",
        expert_title=n["expert_title"] or "", expert_hospital=n["expert_hospital"] or "",
        department=n["department"] or "", patient_name=None if patient is None else patient["name"],
        patient_mrn=n["mrn"], patient_sex=None if patient is None else patient["sex"],
        patient_birth_date=None if patient is None or patient["birth_date"] is None else str(patient["birth_date"]),
        chief_complaint=row["chief_complaint"], preliminary_diagnosis=row["preliminary_diagnosis"],
        question=row["question"], opinion=opinion,
        vitals=[*vitals.get("gateway", []), *vitals.get("hq", [])], advice=advice_of(conn, row["id"]))


def report_pdf_path(public_id: str, version: int) -> str:
    return f"/api/v1/consultations/{public_id}/reports/{version}.pdf"


def issue_report(conn: sa.Connection, row: Mapping[str, Any], opinion: str | None, *, actor: Actor,
                 config: ConsultationsSection, effects: Effects, now: int) -> dict[str, Any]:
    """Render the report (HTML and PDF) from the advice, store it as the next version, push it to the clinic."""
    _require_expert_of(actor, row)
    if row["status"] not in TAKEN:
        raise ConsultationError(f"status: a report needs an accepted consultation, not {row['status']}")
    if opinion is not None and (not isinstance(opinion, str) or len(opinion) > 20_000):
        raise ConsultationError("opinion: expected text of at most 20000 characters")
    r = reports_table
    version = int(conn.execute(sa.select(sa.func.coalesce(sa.func.max(r.c.version), 0))
                               .where(r.c.consultation_id == row["id"])).scalar_one()) + 1
    data = report_data(conn, row, version=version, opinion=(opinion or "").strip() or None, now=now)
    try:
        rendered = reports.render(data, config.report_font)
    except reports.ReportFontError as exc:
        raise ConsultationError(f"report: {exc}") from exc
    conn.execute(r.insert().values(consultation_id=row["id"], version=version, html=rendered.html, pdf=rendered.pdf,
                                   sha256=rendered.sha256, created_by_user_id=actor.user_id, created_ms=now))
    conn.execute(consultations.update().where(consultations.c.id == row["id"])
                 .values(status=str(Status.REPORTED), ended_ms=now))
    audit.record(conn, actor, "consultation.report", "consultation", row["public_id"], clinic_id=row["clinic_id"],
                 detail={"version": version, "sha256": rendered.sha256})
    new = _reload(conn, row["id"])
    dispatching.notify_clinic(conn, new, cw.NOTICE_REPORT, {
        "version": version, "html": rendered.html, "sha256": rendered.sha256, "created_ms": now,
        "pdf_path": report_pdf_path(row["public_id"], version), "expert_name": data.expert_name}, effects)
    dispatching.notify_watchers(conn, new, effects, now)
    return report_meta(conn, row["id"], version)


def report_meta(conn: sa.Connection, consultation_id: int, version: int | None = None) -> dict[str, Any]:
    reports_of = list_reports(conn, consultation_id)
    found = [x for x in reports_of if version is None or x["version"] == version]
    if not found:
        raise ConsultationError(f"version: no report version {version}")
    return found[-1]


def list_reports(conn: sa.Connection, consultation_id: int) -> list[dict[str, Any]]:
    r = reports_table
    rows = conn.execute(sa.select(r.c.version, r.c.sha256, r.c.created_ms, r.c.delivered_ms)
                        .where(r.c.consultation_id == consultation_id).order_by(r.c.version)).mappings()
    return [{"version": x["version"], "sha256": x["sha256"], "created": iso_from_ms(x["created_ms"]),
             "delivered": iso_from_ms(x["delivered_ms"])} for x in rows]


def report_document(conn: sa.Connection, consultation_id: int, version: int) -> dict[str, Any] | None:
    r = reports_table
    row = conn.execute(sa.select(r.c.html, r.c.pdf, r.c.sha256).where(
        r.c.consultation_id == consultation_id, r.c.version == version)).mappings().first()
    return None if row is None else dict(row)


def mark_report_delivered(conn: sa.Connection, public_id: str, version: int, at_ms: int) -> None:
    row = get(conn, public_id)
    if row is not None:
        r = reports_table
        conn.execute(r.update().where(r.c.consultation_id == row["id"], r.c.version == version,
                                      r.c.delivered_ms.is_(None)).values(delivered_ms=at_ms))


# ---- ending, rating, follow-up --------------------------------------------------------------------------
def close(conn: sa.Connection, row: Mapping[str, Any], *, actor: Actor, effects: Effects, now: int) -> dict[str, Any]:
    if row["status"] != Status.REPORTED:
        raise ConsultationError(f"status: only a reported consultation can be closed, not {row['status']}")
    if not (actor.sees_all_clinics or row["expert_id"] == actor.expert_id or
            (actor.role is Role.CLINIC_STAFF and actor.clinic_id == row["clinic_id"])):
        raise NotAllowed("only its expert, the clinic or a coordinator may close a consultation")
    conn.execute(consultations.update().where(consultations.c.id == row["id"]).values(status=str(Status.CLOSED)))
    audit.record(conn, actor, "consultation.close", "consultation", row["public_id"], clinic_id=row["clinic_id"])
    new = _reload(conn, row["id"])
    dispatching.notify_watchers(conn, new, effects, now)
    return new


def cancel(conn: sa.Connection, row: Mapping[str, Any], reason: str | None, *, actor: Actor,
           config: ConsultationsSection, effects: Effects, now: int) -> dict[str, Any]:
    """Withdraw a consultation that is not done (its clinic's staff or chain-wide staff): open offers withdrawn,
    audited, the clinic's gateway and the consoles watching told. A scheduled one is `cancel_scheduled`."""
    _require_clinic_side(actor, row)
    if row["status"] == Status.SCHEDULED:
        return cancel_scheduled(conn, row, reason, actor=actor, config=config, effects=effects, now=now)
    if row["status"] in (*FINISHED, Status.REPORTED):
        raise ConsultationError(f"status: a {row['status']} consultation cannot be cancelled")
    why = _cancel_reason(reason)
    new = _withdraw(conn, row, why, actor=actor, config=config, effects=effects, now=now, detail={"reason": why})
    dispatching.notify_clinic(conn, new, cw.NOTICE_WITHDRAWN, {"reason": why}, effects)
    return new


def cancel_scheduled(conn: sa.Connection, row: Mapping[str, Any], reason: str | None, *, actor: Actor,
                     config: ConsultationsSection, effects: Effects, now: int) -> dict[str, Any]:
    """Cancel a routine consultation booked in an expert's slot, in the caller's transaction: its appointment
    is cancelled and its slot claims deleted (`hq.booking`: the time is free again, the clinic's gateway gets the
    appointment's cancellation, which is how it knows booked consultations), then as `cancel`: any offers
    withdrawn, audited, the consoles watching told."""
    from hq import booking  # here, not at the top: a booking creates its consultation, so booking imports us

    _require_clinic_side(actor, row)
    if row["status"] != Status.SCHEDULED:
        raise ConsultationError(f"status: only a scheduled consultation is cancelled with its booking, not a "
                                f"{row['status']} one")
    why = _cancel_reason(reason)
    change = booking.cancel_booking_of(conn, actor, row["id"], now=now, reason=why)
    if change is not None:
        for message, user_ids, roles, clinic_id in change.live:
            effects.notify(message, user_ids=user_ids, roles=roles, clinic_id=clinic_id)
        effects.downlink_queued = effects.downlink_queued or bool(change.notices)
    return _withdraw(conn, row, why, actor=actor, config=config, effects=effects, now=now, detail={
        "reason": why, "appointment_id": None if change is None else change.appointment["id"]})


def _cancel_reason(reason: str | None) -> str:
    return (reason or "").strip()[:500] or "no reason given"


def _withdraw(conn: sa.Connection, row: Mapping[str, Any], why: str, *, actor: Actor, config: ConsultationsSection,
              effects: Effects, now: int, detail: dict[str, Any]) -> dict[str, Any]:
    """What every cancel does: pending offers withdrawn (their experts told), the row cancelled, the audit entry,
    the consoles watching told. Returns the new row."""
    row = dispatching.cancel(conn, row, config, effects, now, actor)
    conn.execute(consultations.update().where(consultations.c.id == row["id"]).values(
        status=str(Status.CANCELLED), cancelled_ms=now, cancel_reason=why, next_escalation_ms=None))
    audit.record(conn, actor, "consultation.cancel", "consultation", row["public_id"], clinic_id=row["clinic_id"],
                 detail=detail)
    new = _reload(conn, row["id"])
    dispatching.notify_watchers(conn, new, effects, now)
    return new


def rate(conn: sa.Connection, row: Mapping[str, Any], rating: Any, comment: str | None, *, actor: Actor | str,
         now: int) -> dict[str, Any]:
    if not isinstance(actor, str):
        _require_clinic_side(actor, row)
    if isinstance(rating, bool) or not isinstance(rating, int) or not 1 <= rating <= 5:
        raise ConsultationError(f"rating: {rating!r}; expected a whole number from 1 to 5")
    if row["status"] not in (Status.REPORTED, Status.CLOSED):
        raise ConsultationError(f"status: a consultation is rated after its report, not while {row['status']}")
    conn.execute(consultations.update().where(consultations.c.id == row["id"]).values(
        rating=rating, rating_comment=(comment or "").strip()[:FORM_TEXT_MAX] or None, rated_ms=now))
    audit.record(conn, actor, "consultation.rate", "consultation", row["public_id"], clinic_id=row["clinic_id"],
                 detail={"rating": rating})
    return _reload(conn, row["id"])


def record_adoption(conn: sa.Connection, row: Mapping[str, Any], adopted: Any, note: str | None, *,
                    actor: Actor | str, now: int) -> dict[str, Any]:
    if not isinstance(actor, str):
        _require_clinic_side(actor, row)
    if not isinstance(adopted, bool):
        raise ConsultationError(f"adopted: {adopted!r}; expected true or false")
    if row["status"] not in (Status.REPORTED, Status.CLOSED):
        raise ConsultationError(f"status: adoption is recorded after the report, not while {row['status']}")
    conn.execute(consultations.update().where(consultations.c.id == row["id"]).values(
        advice_adopted=adopted, adoption_note=(note or "").strip()[:FORM_TEXT_MAX] or None, adoption_ms=now))
    audit.record(conn, actor, "consultation.adoption", "consultation", row["public_id"], clinic_id=row["clinic_id"],
                 detail={"adopted": adopted})
    return _reload(conn, row["id"])
