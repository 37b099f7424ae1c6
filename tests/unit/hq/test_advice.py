"""Structured advice: drugs with dose, route, frequency and duration, procedures as ordered steps, ICD-10
diagnoses checked by format and against the bundled list; every error names the item and field."""

from __future__ import annotations

import pytest

from hq import advice, icd10
from hq.advice import AdviceError, ItemKind


def test_a_complete_advice_is_normalised() -> None:
    items = advice.validate([
        {"kind": "diagnosis", "code": "i21.9", "certainty": "provisional"},
        {"kind": "drug", "name": "Aspirin", "dose": "300mg", "route": "PO", "frequency": "stat",
         "duration": "single dose"},
        {"kind": "drug", "name": "Heparin", "dose": "80 units/kg", "route": "iv", "frequency": "q6h",
         "duration": "2 Days"},
        {"kind": "procedure", "name": "Transfer", "steps": ["12-lead ECG", " Call 120 ", "Keep NPO"]},
        {"kind": "note", "text": "Repeat troponin in 3 h"},
    ])
    assert [i.kind for i in items] == [ItemKind.DIAGNOSIS, ItemKind.DRUG, ItemKind.DRUG, ItemKind.PROCEDURE,
                                       ItemKind.NOTE]
    assert items[0].body == {"code": "I21.9", "title": "Acute myocardial infarction, unspecified",
                             "certainty": "provisional", "note": None}
    assert items[1].body == {"name": "Aspirin", "dose": "300 mg", "route": "oral", "frequency": "stat",
                             "duration": "single dose", "note": None}
    assert (items[2].body["dose"], items[2].body["route"], items[2].body["duration"]) == (
        "80 units/kg", "intravenous", "2 days")
    assert items[3].body["steps"] == ["12-lead ECG", "Call 120", "Keep NPO"]
    assert advice.frequency_label("q6h") == "every 6 hours" and advice.frequency_label("bid") == "twice a day"


@pytest.mark.parametrize(("item", "path", "says"), [
    ({"kind": "drug", "name": "Aspirin", "dose": "300", "route": "oral", "frequency": "once", "duration": "1 day"},
     "items[0].dose", "amount with a unit"),
    ({"kind": "drug", "name": "Aspirin", "dose": "300 bottles", "route": "oral", "frequency": "once",
      "duration": "1 day"}, "items[0].dose", "unit 'bottles'"),
    ({"kind": "drug", "name": "Aspirin", "dose": "0 mg", "route": "oral", "frequency": "once", "duration": "1 day"},
     "items[0].dose", "positive"),
    ({"kind": "drug", "name": "Aspirin", "dose": "1 g", "route": "by mouth", "frequency": "once",
      "duration": "1 day"}, "items[0].route", "not a route"),
    ({"kind": "drug", "name": "Aspirin", "dose": "1 g", "route": "oral", "frequency": "sometimes",
      "duration": "1 day"}, "items[0].frequency", "not a frequency"),
    ({"kind": "drug", "name": "Aspirin", "dose": "1 g", "route": "oral", "frequency": "q0h", "duration": "1 day"},
     "items[0].frequency", "not a frequency"),
    ({"kind": "drug", "name": "Aspirin", "dose": "1 g", "route": "oral", "frequency": "once", "duration": "a while"},
     "items[0].duration", "not a duration"),
    ({"kind": "drug", "dose": "1 g", "route": "oral", "frequency": "once", "duration": "1 day"},
     "items[0].name", "missing"),
    ({"kind": "drug", "name": "A", "dose": "1 g", "route": "oral", "frequency": "once", "duration": "1 day",
      "colour": "red"}, "items[0].colour", "unknown field"),
    ({"kind": "procedure", "name": "CPR", "steps": []}, "items[0].steps", "at least one"),
    ({"kind": "procedure", "name": "CPR", "steps": ["ok", ""]}, "items[0].steps[1]", "text of the step"),
    ({"kind": "diagnosis", "code": "I2.19"}, "items[0].code", "not an ICD-10 code"),
    ({"kind": "diagnosis", "code": "I21.8"}, "items[0].code", "I21, I21.0"),
    ({"kind": "diagnosis", "code": "Q99"}, "items[0].code", "category Q99 is not in the list"),
    ({"kind": "diagnosis", "code": "I21", "certainty": "maybe"}, "items[0].certainty", "confirmed"),
    ({"kind": "prayer"}, "items[0].kind", "expected one of drug"),
])
def test_each_error_names_the_item_the_field_and_what_was_expected(item: dict[str, object], path: str,
                                                                   says: str) -> None:
    with pytest.raises(AdviceError) as caught:
        advice.validate([item])
    assert caught.value.path == path and says in str(caught.value)


def test_the_advice_must_be_a_list() -> None:
    with pytest.raises(AdviceError, match="items: expected a list"):
        advice.validate({"kind": "note"})


def test_the_bundled_code_list_is_well_formed_and_lists_the_common_categories() -> None:
    codes = icd10.common_codes()
    assert len(codes) > 150 and all(icd10.well_formed(c) for c in codes)
    assert codes["I10"] == "Essential (primary) hypertension" and "J18.9" in codes and "E11.9" in codes


def test_a_malformed_code_list_says_which_line() -> None:
    with pytest.raises(icd10.CodeListError, match=r"x\.tsv:2"):
        icd10.parse_code_list("I10\tHypertension\nnot a code\n", "x.tsv")
    with pytest.raises(icd10.CodeListError, match="listed twice"):
        icd10.parse_code_list("I10\tA\nI10\tB\n", "x.tsv")
