"""The clinic's consultation events, handled in HQ's ingest transaction: an emergency clicked on a gateway's
staff screen (dispatched at once), the short form, the rating and the adoption follow-up; and the receipt of a
report notice (the clinic has the report).

Handlers only: the rules are `hq.consultations`'; malformed or impossible events raise `EventError`.
"""

from __future__ import annotations

from typing import Any

from gateway import consultation_wire as cw
from gateway import wire
from hq import consultations, dispatching
from hq.config import ConsultationsSection
from hq.downlink import Receipts
from hq.gateway_events import EventContext, EventError, GatewayEvents


def _parse(parse: Any, row: dict[str, Any]) -> Any:
    try:
        return parse(row["extra"])
    except wire.WireError as exc:
        raise EventError(str(exc)) from exc


def _consultation(ctx: EventContext, public_id: str, row: dict[str, Any]) -> dict[str, Any]:
    found = consultations.get(ctx.conn, public_id)
    if found is None or found["clinic_id"] != row["clinic_id"]:
        raise EventError(f"public_id: no consultation {public_id} at clinic {row['clinic_id']}")
    return found


class ConsultationEvents:
    def __init__(self, config: ConsultationsSection) -> None:
        self.config = config
        self.emergencies_total = 0

    def register(self, events: GatewayEvents, receipts: Receipts) -> None:
        events.register(cw.EMERGENCY_REQUESTED, self.emergency)
        events.register(cw.CONSULTATION_FORM, self.form)
        events.register(cw.CONSULTATION_RATING, self.rating)
        events.register(cw.ADVICE_ADOPTION, self.adoption)
        receipts.on_receipt(cw.NOTICE_REPORT, self.report_received)

    def emergency(self, ctx: EventContext, row: dict[str, Any]) -> None:
        request: cw.EmergencyRequest = _parse(cw.EmergencyRequest.from_extra, row)
        try:
            consultations.create(
                ctx.conn, kind="emergency", clinic_id=row["clinic_id"], config=self.config, effects=ctx,
                now=ctx.hq_ms, actor=f"gateway:{row['gateway_id']}", public_id=request.public_id,
                gateway_id=row["gateway_id"], mrn=request.mrn, requested_ms=request.clinic_ms,
                gateway_vitals=[{**v.to_json(), "source": "gateway"} for v in request.vitals])
        except (consultations.ConsultationError, dispatching.Conflict) as exc:
            raise EventError(str(exc)) from exc
        self.emergencies_total += 1

    def form(self, ctx: EventContext, row: dict[str, Any]) -> None:
        form: cw.ShortForm = _parse(cw.ShortForm.from_extra, row)
        try:
            consultations.receive_form(ctx.conn, form, clinic_id=row["clinic_id"], gateway_id=row["gateway_id"],
                                       effects=ctx, now=ctx.hq_ms)
        except consultations.ConsultationError as exc:
            raise EventError(str(exc)) from exc

    def rating(self, ctx: EventContext, row: dict[str, Any]) -> None:
        rating: cw.Rating = _parse(cw.Rating.from_extra, row)
        found = _consultation(ctx, rating.public_id, row)
        try:
            consultations.rate(ctx.conn, found, rating.rating, rating.comment, actor=f"gateway:{row['gateway_id']}",
                               now=ctx.hq_ms)
        except consultations.ConsultationError as exc:
            raise EventError(str(exc)) from exc

    def adoption(self, ctx: EventContext, row: dict[str, Any]) -> None:
        adoption: cw.Adoption = _parse(cw.Adoption.from_extra, row)
        found = _consultation(ctx, adoption.public_id, row)
        try:
            consultations.record_adoption(ctx.conn, found, adoption.adopted, adoption.note,
                                          actor=f"gateway:{row['gateway_id']}", now=ctx.hq_ms)
        except consultations.ConsultationError as exc:
            raise EventError(str(exc)) from exc

    def report_received(self, ctx: EventContext, message: dict[str, Any], receipt: wire.Receipt) -> None:
        body = message["body"]
        if receipt.outcome == "applied" and isinstance(body.get("version"), int):
            consultations.mark_report_delivered(ctx.conn, str(body.get("public_id")), body["version"], ctx.hq_ms)
