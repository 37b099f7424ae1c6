"""`ClinicConsultations`: the clinic's side of consultations. An emergency click, the short form, the rating
and the adoption follow-up are committed to the outbox (so they survive an outage and reach HQ when the link
returns) together with the gateway's own record of the consultation, which HQ's notices then keep up to date.

No HTTP and no markup: the staff screen (`gateway.local_ui`) calls it; `describe` says what a record means
for the nurse in front of the screen.
"""

from __future__ import annotations

import json
import logging
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa

from gateway import consultation_wire as cw
from gateway.inbox import Handled, Inbox
from gateway.latest_readings import LatestReadings
from gateway.outbox import LANE_TABLES, Entry, Outbox
from gateway.wire import Lane, Notice, WireError

log = logging.getLogger(__name__)

local_metadata = sa.MetaData()
# The gateway's record of each consultation of this clinic: started on the screen, or learnt from HQ.
consultations_table = sa.Table(
    "consultations", local_metadata,
    sa.Column("public_id", sa.Text, primary_key=True),
    sa.Column("kind", sa.Text, nullable=False),
    sa.Column("origin", sa.Text, nullable=False),  # "screen" | "hq"
    sa.Column("request_seq", sa.Integer),  # the outbox seq of the EMERGENCY_REQUESTED event
    sa.Column("requested_ms", sa.Integer, nullable=False),
    sa.Column("requested_by", sa.Text),
    sa.Column("mrn", sa.Text),
    sa.Column("vitals", sa.Text),  # JSON: what was attached at the click
    sa.Column("hq_status", sa.Text),  # the status HQ last told (hq.consultations.Status)
    sa.Column("hq_text", sa.Text),
    sa.Column("offered", sa.Integer),
    sa.Column("expert_name", sa.Text),
    sa.Column("expert_title", sa.Text),
    sa.Column("hospital", sa.Text),
    sa.Column("accepted_ms", sa.Integer),
    sa.Column("form_due_ms", sa.Integer),
    sa.Column("form", sa.Text),  # JSON of the short form as submitted here
    sa.Column("form_seq", sa.Integer),
    sa.Column("report_version", sa.Integer),
    sa.Column("report_html", sa.Text),
    sa.Column("report_pdf_path", sa.Text),
    sa.Column("report_ms", sa.Integer),
    sa.Column("rating", sa.Integer),
    sa.Column("rating_comment", sa.Text),
    sa.Column("adopted", sa.Boolean),
    sa.Column("adoption_note", sa.Text),
    sa.Column("cancel_reason", sa.Text),
    sa.Column("updated_ms", sa.Integer, nullable=False),
)


# HQ's statuses in the order a consultation moves through them (hq.consultations.Status).
STATUS_RANK = {status: rank for rank, status in enumerate((
    "requested", "dispatching", "escalated", "accepted", "in_session", "reported", "closed", "cancelled"))}


class ConsultationError(ValueError):
    """The staff screen asked for something that cannot be done (unknown consultation, bad field)."""


def clock_ms() -> int:
    return time.time_ns() // 1_000_000


@dataclass(frozen=True, slots=True)
class Delivery:
    """Where the request stands on its way to HQ."""

    queued: bool  # still in the outbox: HQ has not committed it
    link_up: bool


def describe(row: dict[str, Any], delivery: Delivery) -> tuple[str, str]:
    """(state, sentence for the screen) of a consultation record. Pure."""
    status = row.get("hq_status")
    if status == "cancelled":
        return "withdrawn", f"Withdrawn by HQ: {row.get('cancel_reason') or 'no reason given'}"
    if row.get("report_html"):
        return "reported", f"Report received from {row.get('expert_name') or 'the expert'}"
    if row.get("expert_name") and status in (None, "accepted", "in_session", "reported", "closed"):
        title = f" ({row['expert_title']})" if row.get("expert_title") else ""
        return "accepted", f"Accepted by {row['expert_name']}{title}"
    if delivery.queued:
        if not delivery.link_up:
            return "queued", "Queued: will be sent when the link to HQ returns"
        return "sending", "Sending to HQ\u2026"
    if status == "escalated":
        return "escalated", row.get("hq_text") or "No expert has answered yet: escalated to the on-call coordinator"
    if status == "dispatching" and row.get("offered"):
        return "received", f"Received by HQ: offered to {row['offered']} expert(s)"
    return "received", "Received by HQ: finding an expert"


class ClinicConsultations:
    def __init__(self, outbox: Outbox, readings: LatestReadings, link_up: Callable[[], bool],
                 clock: Callable[[], int] = clock_ms) -> None:
        self.outbox = outbox
        self.readings = readings
        self.link_up = link_up
        self.clock = clock
        self.emergencies_total = 0
        self.notices_applied_total = 0

    async def open(self) -> None:
        await self.outbox.query(local_metadata.create_all)

    def register(self, inbox: Inbox) -> None:
        for kind in cw.NOTICE_KINDS:
            inbox.register(kind, self.apply_notice)

    # ---- actions on the screen --------------------------------------------------------------
    async def request_emergency(self, *, mrn: str | None = None, devices: Sequence[str] = (),
                                requested_by: str | None = None) -> str:
        """One click: the request and the current vitals go to the outbox's alarm lane, with the local
        record, in one transaction. Returns the consultation's public id."""
        mrn = (mrn or "").strip() or None
        if mrn is not None and len(mrn) > 80:
            raise ConsultationError("mrn: at most 80 characters")
        now = self.clock()
        vitals = self.readings.snapshot(now, patient_id=mrn, devices=tuple(devices))
        if mrn is None and not devices:
            devices = sorted({v.device_id for v in vitals})
        request = cw.EmergencyRequest(uuid.uuid4().hex, now, mrn, tuple(devices), tuple(vitals),
                                      (requested_by or "").strip()[:200] or None)
        entry = self._event(cw.EMERGENCY_REQUESTED, request.extra(), now, mrn)

        def record(conn: sa.Connection) -> None:
            # The outbox numbers this transaction's entries from next_seq (its one thread runs the work and
            # then the insert), so the request's seq is known before it is stored.
            conn.execute(consultations_table.insert().values(
                public_id=request.public_id, kind="emergency", origin="screen", request_seq=self.outbox.next_seq,
                requested_ms=now, requested_by=request.requested_by, mrn=mrn,
                vitals=json.dumps([v.to_json() for v in vitals]), updated_ms=now))

        await self.outbox.commit_with(record, [entry])
        self.emergencies_total += 1
        log.info("emergency %s requested on the staff screen (%d current readings attached)", request.public_id,
                 len(vitals))
        return request.public_id

    async def submit_form(self, public_id: str, *, chief_complaint: str | None, preliminary_diagnosis: str | None,
                          question: str | None) -> None:
        row = await self._require(public_id)
        now = self.clock()
        try:
            form = cw.ShortForm.from_extra(cw.ShortForm(
                public_id, _clean(chief_complaint), _clean(preliminary_diagnosis), _clean(question), now,
                row["kind"]).extra())
        except WireError as exc:
            raise ConsultationError(str(exc)) from exc
        await self._commit_event(public_id, cw.CONSULTATION_FORM, form.extra(), now, row["mrn"],
                                 seq_column="form_seq", form=json.dumps(form.extra(), ensure_ascii=False))

    async def rate(self, public_id: str, rating: int, comment: str | None = None) -> None:
        row = await self._require(public_id)
        try:
            body = cw.Rating.from_extra({"public_id": public_id, "rating": rating, "comment": _clean(comment)})
        except WireError as exc:
            raise ConsultationError(str(exc)) from exc
        await self._commit_event(public_id, cw.CONSULTATION_RATING, body.extra(), self.clock(), row["mrn"],
                                 rating=body.rating, rating_comment=body.comment)

    async def record_adoption(self, public_id: str, adopted: bool, note: str | None = None) -> None:
        row = await self._require(public_id)
        body = cw.Adoption(public_id, adopted, _clean(note))
        await self._commit_event(public_id, cw.ADVICE_ADOPTION, body.extra(), self.clock(), row["mrn"],
                                 adopted=adopted, adoption_note=body.note)

    def _event(self, metric: str, extra: dict[str, Any], now: int, mrn: str | None) -> Entry:
        return Entry("event", metric, None, None, now, now, mrn, cw.SCREEN_DEVICE, extra,
                     lane_hint=cw.EVENT_LANES[metric])

    async def _commit_event(self, public_id: str, metric: str, extra: dict[str, Any], now: int, mrn: str | None,
                            seq_column: str | None = None, **values: Any) -> None:
        def record(conn: sa.Connection) -> None:
            if seq_column is not None:
                values[seq_column] = self.outbox.next_seq  # see request_emergency
            conn.execute(consultations_table.update().where(consultations_table.c.public_id == public_id)
                         .values(updated_ms=now, **values))

        await self.outbox.commit_with(record, [self._event(metric, extra, now, mrn)])

    # ---- reading ------------------------------------------------------------------------------
    async def get(self, public_id: str) -> dict[str, Any] | None:
        rows = await self.outbox.query(lambda conn: _read(conn, public_id=public_id))
        return rows[0] if rows else None

    async def recent(self, limit: int = 20) -> list[dict[str, Any]]:
        return await self.outbox.query(lambda conn: _read(conn, limit=limit))

    async def _require(self, public_id: str) -> dict[str, Any]:
        row = await self.get(public_id)
        if row is None:
            raise ConsultationError(f"public_id: no consultation {public_id!r} at this clinic")
        return row

    # ---- notices from HQ -----------------------------------------------------------------------
    async def apply_notice(self, notice: Notice) -> Handled:
        try:
            parsed = cw.ConsultationNotice.from_body(notice.kind, notice.body)
        except WireError as exc:
            return Handled("rejected", str(exc))
        await self.outbox.query(lambda conn: _apply(conn, parsed, self.clock()))
        self.notices_applied_total += 1
        return Handled("applied")


def _clean(text: str | None) -> str | None:
    text = (text or "").strip()
    return text or None


def _read(conn: sa.Connection, *, public_id: str | None = None, limit: int = 1) -> list[dict[str, Any]]:
    t = consultations_table
    q = sa.select(t).order_by(t.c.requested_ms.desc()).limit(limit)
    if public_id is not None:
        q = q.where(t.c.public_id == public_id)
    rows = [dict(r) for r in conn.execute(q).mappings()]
    lanes = {Lane.ALARM: LANE_TABLES[Lane.ALARM], Lane.CONSULT: LANE_TABLES[Lane.CONSULT]}
    for row in rows:
        row["vitals"] = json.loads(row["vitals"]) if row["vitals"] else []
        row["form"] = json.loads(row["form"]) if row["form"] else None
        seq = row["request_seq"]
        row["request_queued"] = seq is not None and conn.execute(
            sa.select(lanes[Lane.ALARM].c.seq).where(lanes[Lane.ALARM].c.seq == seq)).first() is not None
        form_seq = row["form_seq"]
        row["form_queued"] = form_seq is not None and conn.execute(
            sa.select(lanes[Lane.CONSULT].c.seq).where(lanes[Lane.CONSULT].c.seq == form_seq)).first() is not None
    return rows


def _apply(conn: sa.Connection, notice: cw.ConsultationNotice, now: int) -> None:
    t = consultations_table
    f = notice.fields
    values: dict[str, Any] = {"updated_ms": now}
    if notice.kind == cw.NOTICE_UPDATE:
        values.update(hq_status=f.get("status"), hq_text=f.get("text"), offered=f.get("offered"),
                      form_due_ms=f.get("form_due_ms"))
    elif notice.kind == cw.NOTICE_ACCEPTED:
        values.update(hq_status="accepted", expert_name=f.get("expert_name"), expert_title=f.get("expert_title"),
                      hospital=f.get("hospital"), accepted_ms=f.get("accepted_ms"))
    elif notice.kind == cw.NOTICE_WITHDRAWN:
        values.update(hq_status="cancelled", cancel_reason=f.get("reason"))
    elif notice.kind == cw.NOTICE_REPORT:
        values.update(hq_status="reported", report_version=f.get("version"), report_html=f.get("html"),
                      report_pdf_path=f.get("pdf_path"), report_ms=f.get("created_ms"))
        if f.get("expert_name"):
            values["expert_name"] = f["expert_name"]
    values = {k: v for k, v in values.items() if v is not None or k == "hq_text"}
    known = conn.execute(sa.select(t.c.hq_status).where(t.c.public_id == notice.public_id)).first()
    old_rank = -1 if known is None else STATUS_RANK.get(known.hq_status or "", -1)
    if old_rank > STATUS_RANK.get(values.get("hq_status", ""), -1):
        # A notice retried after a newer one: the consultation does not go back.
        values.pop("hq_status", None)
    if known is None:
        # Started at HQ (the console) for this clinic: the screen shows it too.
        conn.execute(t.insert().values(public_id=notice.public_id, kind=str(f.get("kind") or "emergency"),
                                       origin="hq", requested_ms=now, mrn=f.get("mrn"), **values))
    else:
        conn.execute(t.update().where(t.c.public_id == notice.public_id).values(**values))
