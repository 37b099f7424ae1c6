"""The check-in form of the gateway's local screen: validated into the PATIENT_CHECKIN event body, with errors
that name the field a person at the desk can fix."""

from __future__ import annotations

import datetime as dt

import pytest

from gateway.checkin_form import CheckinError, parse

TODAY = dt.date(2026, 12, 1)
DEVICES = {"monitor-1": "P-BED-3", "oxi-2": None}


def checkin(**form: str) -> object:
    return parse(form, checkin_id="c" * 32, now_ms=1_000, today=TODAY, devices=DEVICES)


def test_a_full_checkin_becomes_the_event_body() -> None:
    c = checkin(mrn=" A-0012 ", name="张  伟", alt_name="Zhang Wei", national_id="110105 19900307-123x", sex="Male",
                birth_date="1990-03-07", phone="555", reason="chest pain", device_id="monitor-1", csrf_token="x")
    assert c.event_body() == {  # type: ignore[attr-defined]
        "checkin_id": "c" * 32, "mrn": "A-0012", "name": "张 伟", "family_name": None, "given_name": None,
        "alt_name": "Zhang Wei", "national_id": "11010519900307123X", "sex": "male", "birth_date": "1990-03-07",
        "phone": "555", "reason": "chest pain", "checked_in_ms": 1_000,
        "devices": [{"device_id": "monitor-1", "reported_patient_id": "P-BED-3"}]}


def test_family_and_given_name_are_enough_and_sex_may_be_a_letter() -> None:
    c = checkin(mrn="A-1", family_name="李", given_name="娜", sex="女")
    assert c.event_body()["devices"] == [] and c.event_body()["sex"] == "female"  # type: ignore[attr-defined]


@pytest.mark.parametrize(("form", "field", "says"), [
    ({"name": "X"}, "mrn", "record number"),
    ({"mrn": "A-1"}, "name", "name"),
    ({"mrn": "A-1", "name": "X", "sex": "x"}, "sex", "one of female"),
    ({"mrn": "A-1", "name": "X", "birth_date": "07.03.1990"}, "birth_date", "YYYY-MM-DD"),
    ({"mrn": "A-1", "name": "X", "birth_date": "2027-01-01"}, "birth_date", "future"),
    ({"mrn": "A-1", "name": "X", "national_id": "12#4"}, "national_id", "letters and digits"),
    ({"mrn": "A-1", "name": "X", "device_id": "monitor-9"}, "device_id", "devices: monitor-1, oxi-2"),
    ({"mrn": "A" * 81, "name": "X"}, "mrn", "at most 80"),
    ({"mrn": "A-1", "name": "X\x07"}, "name", "control characters"),
    ({"mrn": "A-1", "name": "X", "colour": "red"}, "colour", "unknown field"),
])
def test_errors_name_the_field(form: dict[str, str], field: str, says: str) -> None:
    with pytest.raises(CheckinError) as exc:
        checkin(**form)
    assert exc.value.field == field and says in str(exc.value)


def test_non_text_values_are_refused() -> None:
    with pytest.raises(CheckinError, match="mrn: must be text"):
        parse({"mrn": 12, "name": "X"}, checkin_id="c", now_ms=0, today=TODAY, devices={})
