"""The appointment part of the gateway-HQ contract: the notices HQ sends a clinic's gateway when one of its
appointments is booked, waits for a department head, is rejected, moved, cancelled or comes up soon.

Pure: no I/O. HQ builds the body with `AppointmentNotice.body()`, the gateway reads it with `from_body`
(a `gateway.wire.WireError` names the field that was wrong).

Notices (HQ -> gateway, `hq.downlink`), all with the same body:
    appointment.confirmed         booked (a routine slot, or an urgent extra slot once approved)
    appointment.pending_approval  an urgent extra slot was asked for; a department head decides
    appointment.rejected          the department head said no (`note` says why)
    appointment.rescheduled       moved (`previous_start_ms`); a confirmation of the new time
    appointment.cancelled         cancelled (`note` says why)
    appointment.reminder          it starts soon
Body: {"appointment_id", "status", "start_ms", "end_ms", "expert_name", "expert_title", "hospital",
"department", "expert_time_zone", "public_id" (the consultation's, once booked), "patient_mrn", "urgent_extra",
"text" (one sentence for the screen), "previous_start_ms", "note"}. Times are Unix milliseconds, UTC.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from gateway.wire import WireError

NOTICE_CONFIRMED = "appointment.confirmed"
NOTICE_PENDING = "appointment.pending_approval"
NOTICE_REJECTED = "appointment.rejected"
NOTICE_RESCHEDULED = "appointment.rescheduled"
NOTICE_CANCELLED = "appointment.cancelled"
NOTICE_REMINDER = "appointment.reminder"
NOTICE_KINDS = (NOTICE_CONFIRMED, NOTICE_PENDING, NOTICE_REJECTED, NOTICE_RESCHEDULED, NOTICE_CANCELLED,
                NOTICE_REMINDER)
# Receipts of these tell HQ that the clinic has the booking's time (confirmations).
CONFIRMING_KINDS = (NOTICE_CONFIRMED, NOTICE_RESCHEDULED)
STATUSES = ("booked", "pending_approval", "rejected", "cancelled")
TEXT_MAX = 2000


@dataclass(frozen=True, slots=True)
class AppointmentNotice:
    kind: str
    appointment_id: int
    status: str
    start_ms: int
    end_ms: int
    expert_name: str
    expert_title: str = ""
    hospital: str = ""
    department: str = ""
    expert_time_zone: str = "UTC"
    public_id: str | None = None
    patient_mrn: str | None = None
    urgent_extra: bool = False
    text: str = ""
    previous_start_ms: int | None = None
    note: str | None = None

    def body(self) -> dict[str, Any]:
        return {"appointment_id": self.appointment_id, "status": self.status, "start_ms": self.start_ms,
                "end_ms": self.end_ms, "expert_name": self.expert_name, "expert_title": self.expert_title,
                "hospital": self.hospital, "department": self.department,
                "expert_time_zone": self.expert_time_zone, "public_id": self.public_id,
                "patient_mrn": self.patient_mrn, "urgent_extra": self.urgent_extra, "text": self.text,
                "previous_start_ms": self.previous_start_ms, "note": self.note}

    @classmethod
    def from_body(cls, kind: str, body: Any) -> AppointmentNotice:
        if kind not in NOTICE_KINDS:
            raise WireError(f"notice kind {kind!r} is not an appointment notice ({', '.join(NOTICE_KINDS)})")
        if not isinstance(body, dict):
            raise WireError(f"{kind}: the body must be an object")

        def integer(name: str, optional: bool = False) -> int | None:
            value = body.get(name)
            if value is None and optional:
                return None
            if not isinstance(value, int) or isinstance(value, bool) or value < 0:
                raise WireError(f"{kind} field {name!r} = {value!r}; expected a non-negative integer")
            return value

        def text(name: str, optional: bool = True) -> str | None:
            value = body.get(name)
            if value is None and optional:
                return None
            if not isinstance(value, str) or len(value) > TEXT_MAX:
                raise WireError(f"{kind} field {name!r} must be text of at most {TEXT_MAX} characters")
            return value

        status = body.get("status")
        if status not in STATUSES:
            raise WireError(f"{kind} field 'status' = {status!r}; expected one of {', '.join(STATUSES)}")
        appointment_id, start_ms, end_ms = integer("appointment_id"), integer("start_ms"), integer("end_ms")
        assert appointment_id is not None and start_ms is not None and end_ms is not None
        if end_ms <= start_ms:
            raise WireError(f"{kind}: end_ms {end_ms} is not after start_ms {start_ms}")
        urgent = body.get("urgent_extra", False)
        if not isinstance(urgent, bool):
            raise WireError(f"{kind} field 'urgent_extra' = {urgent!r}; expected true or false")
        return cls(kind, appointment_id, str(status), start_ms, end_ms, text("expert_name", False) or "",
                   text("expert_title") or "", text("hospital") or "", text("department") or "",
                   text("expert_time_zone") or "UTC", text("public_id"), text("patient_mrn"), urgent,
                   text("text") or "", integer("previous_start_ms", True), text("note"))
