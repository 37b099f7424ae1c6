"""The consultation part of the gateway-HQ contract: the events the clinic's staff screen puts in the outbox
(an emergency, the short form, a rating, whether advice was adopted) and the notices HQ sends back.

Pure: no I/O. Every `from_*` raises `gateway.wire.WireError` naming the field that was wrong.

Events (outbox rows of kind "event", metric = the name, device_id `SCREEN_DEVICE`, extra = the body):
    EMERGENCY_REQUESTED  alarm lane   {"public_id", "clinic_ms", "mrn", "devices", "vitals", "requested_by"}
    CONSULTATION_FORM    consult lane {"public_id", "kind", "chief_complaint", "preliminary_diagnosis",
                                       "question", "submitted_ms"}
    CONSULTATION_RATING  consult lane {"public_id", "rating" (1-5), "comment"}
    ADVICE_ADOPTION      consult lane {"public_id", "adopted" (bool), "note"}
`public_id` is made where the consultation starts (uuid4 hex): the gateway for a click, HQ for the console.
`vitals` is the gateway's newest reading of each metric of the patient (or of the devices) at the click:
[{"metric", "value", "unit", "time_ms", "device_id", "patient_id"}].

Notices (HQ -> gateway, `hq.downlink`), body always with "public_id":
    consultation.update     {"status", "text", "kind", "form_due_ms", "offered", "mrn"}  status changes
    consultation.accepted   {"expert_name", "expert_title", "hospital", "accepted_ms"}
    consultation.withdrawn  {"reason"}  the consultation was cancelled at HQ
    consultation.report     {"version", "html", "sha256", "pdf_path", "created_ms", "expert_name"}
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from gateway.wire import Lane, WireError

EMERGENCY_REQUESTED = "EMERGENCY_REQUESTED"
CONSULTATION_FORM = "CONSULTATION_FORM"
CONSULTATION_RATING = "CONSULTATION_RATING"
ADVICE_ADOPTION = "ADVICE_ADOPTION"
EVENT_LANES = {EMERGENCY_REQUESTED: Lane.ALARM, CONSULTATION_FORM: Lane.CONSULT,
               CONSULTATION_RATING: Lane.CONSULT, ADVICE_ADOPTION: Lane.CONSULT}
SCREEN_DEVICE = "local-screen"  # the device id of events made on the staff screen

NOTICE_UPDATE = "consultation.update"
NOTICE_ACCEPTED = "consultation.accepted"
NOTICE_WITHDRAWN = "consultation.withdrawn"
NOTICE_REPORT = "consultation.report"
NOTICE_KINDS = (NOTICE_UPDATE, NOTICE_ACCEPTED, NOTICE_WITHDRAWN, NOTICE_REPORT)

TEXT_MAX = 4000
MAX_VITALS = 64
KINDS = ("routine", "urgent", "emergency")


def valid_public_id(value: Any) -> bool:
    return (isinstance(value, str) and 8 <= len(value) <= 40
            and all(c in "0123456789abcdef" for c in value))


def _where(what: str, name: str) -> str:
    return f"{what} field {name!r}"


def _public_id(doc: dict[str, Any], what: str) -> str:
    value = doc.get("public_id")
    if not valid_public_id(value):
        raise WireError(f"{_where(what, 'public_id')} = {value!r}; expected 8-40 lowercase hex digits")
    return str(value)


def _text(doc: dict[str, Any], name: str, what: str, *, required: bool = False) -> str | None:
    value = doc.get(name)
    if value is None or value == "":
        if required:
            raise WireError(f"{_where(what, name)} is missing; expected text")
        return None
    if not isinstance(value, str) or len(value) > TEXT_MAX:
        raise WireError(f"{_where(what, name)} must be text of at most {TEXT_MAX} characters")
    return value


def _int(doc: dict[str, Any], name: str, what: str, *, optional: bool = False) -> int | None:
    value = doc.get(name)
    if value is None and optional:
        return None
    if not isinstance(value, int) or isinstance(value, bool):
        raise WireError(f"{_where(what, name)} = {value!r}; expected an integer")
    return value


def _object(extra: Any, what: str) -> dict[str, Any]:
    if not isinstance(extra, dict):
        raise WireError(f"{what}: the body (extra) must be an object")
    return extra


@dataclass(frozen=True, slots=True)
class VitalSign:
    metric: str
    value: float | None
    unit: str | None
    time_ms: int
    device_id: str
    patient_id: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {"metric": self.metric, "value": self.value, "unit": self.unit, "time_ms": self.time_ms,
                "device_id": self.device_id, "patient_id": self.patient_id}

    @classmethod
    def from_json(cls, doc: Any, where: str) -> VitalSign:
        if not isinstance(doc, dict):
            raise WireError(f"{where} must be an object")
        metric, value, unit, device = doc.get("metric"), doc.get("value"), doc.get("unit"), doc.get("device_id")
        if not isinstance(metric, str) or not metric:
            raise WireError(f"{where}.metric must be a non-empty string")
        if value is not None and (isinstance(value, bool) or not isinstance(value, int | float)
                                  or not math.isfinite(value)):
            raise WireError(f"{where}.value = {value!r}; expected a finite number or null")
        if unit is not None and not isinstance(unit, str):
            raise WireError(f"{where}.unit must be a string or null")
        if not isinstance(device, str):
            raise WireError(f"{where}.device_id must be a string")
        patient = doc.get("patient_id")
        if patient is not None and not isinstance(patient, str):
            raise WireError(f"{where}.patient_id must be a string or null")
        time_ms = _int(doc, "time_ms", where)
        assert time_ms is not None
        return cls(metric, None if value is None else float(value), unit, time_ms, device, patient)


@dataclass(frozen=True, slots=True)
class EmergencyRequest:
    public_id: str
    clinic_ms: int  # the click, on the gateway's clock
    mrn: str | None = None  # the patient's record number at this clinic (the devices' patient id), if known
    devices: tuple[str, ...] = ()
    vitals: tuple[VitalSign, ...] = ()
    requested_by: str | None = None

    def extra(self) -> dict[str, Any]:
        return {"public_id": self.public_id, "clinic_ms": self.clinic_ms, "mrn": self.mrn,
                "devices": list(self.devices), "vitals": [v.to_json() for v in self.vitals],
                "requested_by": self.requested_by}

    @classmethod
    def from_extra(cls, extra: Any) -> EmergencyRequest:
        what = EMERGENCY_REQUESTED
        doc = _object(extra, what)
        devices = doc.get("devices") or []
        if not isinstance(devices, list) or not all(isinstance(d, str) for d in devices):
            raise WireError(f"{_where(what, 'devices')} must be a list of device ids")
        vitals = doc.get("vitals") or []
        if not isinstance(vitals, list) or len(vitals) > MAX_VITALS:
            raise WireError(f"{_where(what, 'vitals')} must be a list of at most {MAX_VITALS} readings")
        mrn = _text(doc, "mrn", what)
        if mrn is not None and len(mrn) > 80:
            raise WireError(f"{_where(what, 'mrn')} must be at most 80 characters")
        clinic_ms = _int(doc, "clinic_ms", what)
        assert clinic_ms is not None
        return cls(_public_id(doc, what), clinic_ms, mrn, tuple(devices),
                   tuple(VitalSign.from_json(v, f"{what} vitals[{i}]") for i, v in enumerate(vitals)),
                   _text(doc, "requested_by", what))


@dataclass(frozen=True, slots=True)
class ShortForm:
    public_id: str
    chief_complaint: str | None
    preliminary_diagnosis: str | None
    question: str | None
    submitted_ms: int
    kind: str = "emergency"

    def extra(self) -> dict[str, Any]:
        return {"public_id": self.public_id, "kind": self.kind, "chief_complaint": self.chief_complaint,
                "preliminary_diagnosis": self.preliminary_diagnosis, "question": self.question,
                "submitted_ms": self.submitted_ms}

    @classmethod
    def from_extra(cls, extra: Any) -> ShortForm:
        what = CONSULTATION_FORM
        doc = _object(extra, what)
        kind = doc.get("kind", "emergency")
        if kind not in KINDS:
            raise WireError(f"{_where(what, 'kind')} = {kind!r}; expected one of {', '.join(KINDS)}")
        form = cls(_public_id(doc, what), _text(doc, "chief_complaint", what),
                   _text(doc, "preliminary_diagnosis", what), _text(doc, "question", what),
                   _int(doc, "submitted_ms", what) or 0, kind)
        if not (form.chief_complaint or form.preliminary_diagnosis or form.question):
            raise WireError(f"{what}: chief_complaint, preliminary_diagnosis and question are all empty")
        return form


@dataclass(frozen=True, slots=True)
class Rating:
    public_id: str
    rating: int
    comment: str | None = None

    def extra(self) -> dict[str, Any]:
        return {"public_id": self.public_id, "rating": self.rating, "comment": self.comment}

    @classmethod
    def from_extra(cls, extra: Any) -> Rating:
        what = CONSULTATION_RATING
        doc = _object(extra, what)
        rating = _int(doc, "rating", what)
        assert rating is not None
        if not 1 <= rating <= 5:
            raise WireError(f"{_where(what, 'rating')} = {rating}; expected 1 to 5")
        return cls(_public_id(doc, what), rating, _text(doc, "comment", what))


@dataclass(frozen=True, slots=True)
class Adoption:
    public_id: str
    adopted: bool
    note: str | None = None

    def extra(self) -> dict[str, Any]:
        return {"public_id": self.public_id, "adopted": self.adopted, "note": self.note}

    @classmethod
    def from_extra(cls, extra: Any) -> Adoption:
        what = ADVICE_ADOPTION
        doc = _object(extra, what)
        adopted = doc.get("adopted")
        if not isinstance(adopted, bool):
            raise WireError(f"{_where(what, 'adopted')} = {adopted!r}; expected true or false")
        return cls(_public_id(doc, what), adopted, _text(doc, "note", what))


@dataclass(frozen=True, slots=True)
class ConsultationNotice:
    """A consultation notice's body as the gateway reads it: the public id and the fields of its kind."""

    kind: str
    public_id: str
    fields: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_body(cls, kind: str, body: Any) -> ConsultationNotice:
        if kind not in NOTICE_KINDS:
            raise WireError(f"notice kind {kind!r} is not a consultation notice ({', '.join(NOTICE_KINDS)})")
        doc = _object(body, kind)
        public_id = _public_id(doc, kind)
        if kind == NOTICE_UPDATE:
            _text(doc, "status", kind, required=True)
        elif kind == NOTICE_ACCEPTED:
            _text(doc, "expert_name", kind, required=True)
        elif kind == NOTICE_REPORT:
            _int(doc, "version", kind)
            html = doc.get("html")
            if not isinstance(html, str) or not html:
                raise WireError(f"{_where(kind, 'html')} must be the report's HTML")
        return cls(kind, public_id, {k: v for k, v in doc.items() if k != "public_id"})
