"""A patient check-in as the clinic's staff enter it on the gateway's local screen: validated into the body of the
PATIENT_CHECKIN event (consultation lane) that HQ reconciles with its records.

Pure: no I/O, no clock reads (`today` and the ids are passed in). HQ validates again with its own rules; this
catches what a person can fix at the desk, with messages that name the field.
"""

from __future__ import annotations

import datetime as dt
import re
import unicodedata
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from gateway import wire

EVENT_METRIC = wire.PATIENT_CHECKIN_METRIC
RESULT_NOTICE = wire.CHECKIN_RESULT_NOTICE  # HQ -> gateway: which HQ patient the check-in became
SEXES = ("female", "male", "other", "unknown")
FIELDS = ("mrn", "name", "family_name", "given_name", "alt_name", "national_id", "sex", "birth_date", "phone",
          "reason", "device_id")
LIMITS = {"mrn": 80, "name": 200, "family_name": 100, "given_name": 100, "alt_name": 200, "national_id": 40,
          "phone": 40, "reason": 1000, "device_id": 80, "sex": 16, "birth_date": 32}
SEX_WORDS = {"f": "female", "女": "female", "m": "male", "男": "male", "o": "other", "u": "unknown"}


class CheckinError(ValueError):
    """A field of the check-in form is not acceptable; `field` names it."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field


@dataclass(frozen=True, slots=True)
class Checkin:
    checkin_id: str
    mrn: str
    name: str | None
    family_name: str | None = None
    given_name: str | None = None
    alt_name: str | None = None
    national_id: str | None = None
    sex: str | None = None
    birth_date: str | None = None  # ISO date
    phone: str | None = None
    reason: str | None = None
    checked_in_ms: int = 0
    devices: tuple[tuple[str, str | None], ...] = field(default=())  # (device id, the patient id it reported)

    def event_body(self) -> dict[str, Any]:
        return {"checkin_id": self.checkin_id, "mrn": self.mrn, "name": self.name, "family_name": self.family_name,
                "given_name": self.given_name, "alt_name": self.alt_name, "national_id": self.national_id,
                "sex": self.sex, "birth_date": self.birth_date, "phone": self.phone, "reason": self.reason,
                "checked_in_ms": self.checked_in_ms,
                "devices": [{"device_id": d, "reported_patient_id": p} for d, p in self.devices]}


def _text(form: Mapping[str, Any], name: str) -> str | None:
    value = form.get(name)
    if value is None:
        return None
    if not isinstance(value, str):
        raise CheckinError(name, f"must be text, not {type(value).__name__}")
    cleaned = " ".join(value.split())
    if not cleaned:
        return None
    if len(cleaned) > LIMITS[name]:
        raise CheckinError(name, f"is {len(cleaned)} characters long; at most {LIMITS[name]}")
    if any(unicodedata.category(c) == "Cc" for c in cleaned):
        raise CheckinError(name, "contains control characters")
    return cleaned


def parse(form: Mapping[str, Any], *, checkin_id: str, now_ms: int, today: dt.date,
          devices: Mapping[str, str | None]) -> Checkin:
    """The check-in in `form`; `devices` are the gateway's devices (id -> the patient id its readings carry now),
    of which the form may link one ("device_id") to the patient."""
    unknown = sorted(set(form) - set(FIELDS) - {"csrf_token"})
    if unknown:
        raise CheckinError(unknown[0], f"unknown field; expected some of {', '.join(FIELDS)}")
    mrn = _text(form, "mrn")
    if mrn is None:
        raise CheckinError("mrn", "is empty: the clinic's record number of the patient (what the monitors show)")
    name, family, given = _text(form, "name"), _text(form, "family_name"), _text(form, "given_name")
    if name is None and family is None and given is None:
        raise CheckinError("name", "is empty: the patient's name (or family and given name)")
    national_id = _text(form, "national_id")
    if national_id is not None:
        national_id = re.sub(r"[\s\-]", "", unicodedata.normalize("NFKC", national_id)).upper()
        if not national_id.isascii() or not national_id.isalnum():
            raise CheckinError("national_id", "must be letters and digits (spaces and hyphens are ignored)")
    sex = _text(form, "sex")
    if sex is not None:
        sex = SEX_WORDS.get(sex.lower(), sex.lower())
        if sex not in SEXES:
            raise CheckinError("sex", f"{sex!r} is not one of {', '.join(SEXES)}")
    born = _text(form, "birth_date")
    if born is not None:
        try:
            day = dt.date.fromisoformat(born)
        except ValueError:
            raise CheckinError("birth_date", f"{born!r} is not a date of the form YYYY-MM-DD") from None
        if day > today:
            raise CheckinError("birth_date", f"{born} is in the future")
    linked: tuple[tuple[str, str | None], ...] = ()
    device_id = _text(form, "device_id")
    if device_id is not None:
        if device_id not in devices:
            known = ", ".join(sorted(devices)) or "none"
            raise CheckinError("device_id", f"no device {device_id!r} on this gateway (devices: {known})")
        linked = ((device_id, devices[device_id]),)
    return Checkin(checkin_id=checkin_id, mrn=mrn, name=name, family_name=family, given_name=given,
                   alt_name=_text(form, "alt_name"), national_id=national_id, sex=sex, birth_date=born,
                   phone=_text(form, "phone"), reason=_text(form, "reason"), checked_in_ms=now_ms, devices=linked)
