"""Structured advice of a consultation: drugs (name, dose, route, frequency, duration), procedures as ordered
steps, diagnoses as ICD-10 codes, free notes. `validate` turns what the expert sent into normalised items or
says exactly which item and field is wrong and what was expected.

Pure rules over plain data; storing the items is `hq.consultations`' job, showing them `hq.reports`'.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from hq import icd10

MAX_ITEMS = 100
MAX_TEXT = 2000
MAX_NAME = 200
MAX_STEPS = 50


class AdviceError(ValueError):
    """Invalid advice: `path` is where (e.g. "items[2].dose"), the message what was expected."""

    def __init__(self, path: str, message: str) -> None:
        super().__init__(f"{path}: {message}")
        self.path = path


class ItemKind(enum.StrEnum):
    DRUG = "drug"
    PROCEDURE = "procedure"
    DIAGNOSIS = "diagnosis"
    NOTE = "note"


ROUTES = {
    "oral": "oral (PO)", "sublingual": "sublingual (SL)", "intravenous": "intravenous (IV)",
    "intramuscular": "intramuscular (IM)", "subcutaneous": "subcutaneous (SC)", "inhaled": "inhaled",
    "nebulised": "nebulised", "intranasal": "intranasal", "topical": "topical", "transdermal": "transdermal",
    "rectal": "rectal (PR)", "ophthalmic": "ophthalmic", "otic": "otic", "intraosseous": "intraosseous (IO)",
}
ROUTE_ALIASES = {"po": "oral", "sl": "sublingual", "iv": "intravenous", "im": "intramuscular", "sc": "subcutaneous",
                 "sq": "subcutaneous", "pr": "rectal", "io": "intraosseous", "inh": "inhaled", "neb": "nebulised"}
FREQUENCIES = {
    "once": "once", "stat": "immediately, once", "daily": "once a day", "bid": "twice a day",
    "tid": "three times a day", "qid": "four times a day", "qhs": "at bedtime", "weekly": "once a week",
    "prn": "when needed", "continuous": "continuous infusion",
}
FREQUENCY_ALIASES = {"qd": "daily", "od": "daily", "once daily": "daily", "twice daily": "bid", "as needed": "prn"}
EVERY_HOURS = re.compile(r"q([1-9][0-9]?)h")  # q4h, q6h, q12h ...
DOSE_UNITS = ("mg", "g", "mcg", "ug", "ng", "ml", "l", "iu", "units", "u", "mmol", "meq", "drops", "tablets",
              "tablet", "capsules", "capsule", "puffs", "puff", "%")
DOSE_PER = ("kg", "min", "h", "day")  # weight-based and rate doses: mg/kg, mcg/kg/min, ml/h
DOSE = re.compile(r"(\d+(?:\.\d+)?)(?:\s*-\s*(\d+(?:\.\d+)?))?\s*([a-zA-Z%µ/]+)")
DURATION_UNITS = {"min": "minutes", "minute": "minutes", "minutes": "minutes", "h": "hours", "hour": "hours",
                  "hours": "hours", "d": "days", "day": "days", "days": "days", "week": "weeks", "weeks": "weeks",
                  "month": "months", "months": "months"}
DURATION = re.compile(r"(\d+)\s*([a-z]+)")
OPEN_DURATIONS = ("single dose", "until review", "ongoing")
CERTAINTIES = ("confirmed", "provisional", "differential")


@dataclass(frozen=True, slots=True)
class AdviceItem:
    kind: ItemKind
    body: dict[str, Any]


def _text(doc: dict[str, Any], name: str, path: str, *, limit: int = MAX_TEXT, required: bool = True) -> str | None:
    value = doc.get(name)
    if value is None or (isinstance(value, str) and not value.strip()):
        if required:
            raise AdviceError(f"{path}.{name}", "is missing")
        return None
    if not isinstance(value, str):
        raise AdviceError(f"{path}.{name}", f"expected text, got {type(value).__name__}")
    value = value.strip()
    if len(value) > limit:
        raise AdviceError(f"{path}.{name}", f"at most {limit} characters")
    return value


def _only(doc: dict[str, Any], allowed: Sequence[str], path: str) -> None:
    unknown = sorted(set(doc) - {"kind", *allowed})
    if unknown:
        raise AdviceError(f"{path}.{unknown[0]}", f"unknown field; expected {', '.join(allowed)}")


def parse_dose(text: str, path: str) -> str:
    match = DOSE.fullmatch(text.strip().replace("µg", "mcg"))
    if match is None:
        raise AdviceError(path, f"{text!r} is not an amount with a unit; expected e.g. '300 mg', '0.5 mg/kg', "
                                "'1-2 tablets'")
    low, high, unit = match.groups()
    base, *per = unit.lower().split("/")
    if base not in DOSE_UNITS or len(per) > 2 or any(p not in DOSE_PER for p in per) or len(set(per)) < len(per):
        raise AdviceError(path, f"unit {unit!r} is not known; expected one of {', '.join(DOSE_UNITS)}, "
                                f"optionally per {' / '.join(DOSE_PER)} (e.g. mg/kg, mcg/kg/min)")
    if float(low) <= 0 or (high is not None and float(high) <= float(low)):
        raise AdviceError(path, f"{text!r}: the amount must be positive (a range low-high with low < high)")
    amount = low if high is None else f"{low}-{high}"
    return f"{amount} {unit if unit.lower() not in ('ml', 'l', 'iu', 'meq') else unit.lower()}"


def parse_route(text: str, path: str) -> str:
    key = text.strip().lower()
    key = ROUTE_ALIASES.get(key, key)
    if key not in ROUTES:
        raise AdviceError(path, f"{text!r} is not a route; expected one of {', '.join(ROUTES)}")
    return key


def parse_frequency(text: str, path: str) -> str:
    key = text.strip().lower()
    key = FREQUENCY_ALIASES.get(key, key)
    if key in FREQUENCIES:
        return key
    match = EVERY_HOURS.fullmatch(key)
    if match is not None and 1 <= int(match.group(1)) <= 72:
        return key
    raise AdviceError(path, f"{text!r} is not a frequency; expected one of {', '.join(FREQUENCIES)} or qNh "
                            "(every N hours, e.g. q6h)")


def frequency_label(code: str) -> str:
    match = EVERY_HOURS.fullmatch(code)
    return f"every {match.group(1)} hours" if match else FREQUENCIES.get(code, code)


def parse_duration(text: str, path: str) -> str:
    key = text.strip().lower()
    if key in OPEN_DURATIONS:
        return key
    match = DURATION.fullmatch(key)
    if match is None or match.group(2) not in DURATION_UNITS or int(match.group(1)) < 1:
        raise AdviceError(path, f"{text!r} is not a duration; expected e.g. '5 days', '2 weeks', '30 min' or one of "
                                f"{', '.join(OPEN_DURATIONS)}")
    return f"{int(match.group(1))} {DURATION_UNITS[match.group(2)]}"


def _drug(doc: dict[str, Any], path: str) -> dict[str, Any]:
    _only(doc, ("name", "dose", "route", "frequency", "duration", "note"), path)
    name = _text(doc, "name", path, limit=MAX_NAME)
    dose = parse_dose(_text(doc, "dose", path) or "", f"{path}.dose")
    route = parse_route(_text(doc, "route", path) or "", f"{path}.route")
    frequency = parse_frequency(_text(doc, "frequency", path) or "", f"{path}.frequency")
    duration = parse_duration(_text(doc, "duration", path) or "", f"{path}.duration")
    return {"name": name, "dose": dose, "route": route, "frequency": frequency, "duration": duration,
            "note": _text(doc, "note", path, required=False)}


def _procedure(doc: dict[str, Any], path: str) -> dict[str, Any]:
    _only(doc, ("name", "steps"), path)
    steps = doc.get("steps")
    if isinstance(steps, str):
        steps = [line for line in steps.splitlines() if line.strip()]
    if not isinstance(steps, list) or not steps:
        raise AdviceError(f"{path}.steps", "expected the steps in order, at least one")
    if len(steps) > MAX_STEPS:
        raise AdviceError(f"{path}.steps", f"at most {MAX_STEPS} steps")
    checked = []
    for i, step in enumerate(steps):
        if not isinstance(step, str) or not step.strip():
            raise AdviceError(f"{path}.steps[{i}]", "expected the text of the step")
        if len(step) > MAX_TEXT:
            raise AdviceError(f"{path}.steps[{i}]", f"at most {MAX_TEXT} characters")
        checked.append(step.strip())
    return {"name": _text(doc, "name", path, limit=MAX_NAME), "steps": checked}


def _diagnosis(doc: dict[str, Any], path: str) -> dict[str, Any]:
    _only(doc, ("code", "certainty", "note"), path)
    raw = _text(doc, "code", path, limit=16) or ""
    code = icd10.normalise(raw)
    if not icd10.well_formed(code):
        raise AdviceError(f"{path}.code", f"{raw!r} is not an ICD-10 code; expected a letter, two digits and "
                                          "optionally a dot and a subdivision, e.g. I21 or I21.9")
    title = icd10.title(code)
    if title is None:
        near = icd10.in_category(code)
        hint = f"listed codes of category {code[:3]}: {', '.join(near)}" if near else \
            f"category {code[:3]} is not in the list"
        raise AdviceError(f"{path}.code", f"{code} is not in the bundled list of common ICD-10 codes ({hint})")
    certainty = _text(doc, "certainty", path, required=False) or "provisional"
    if certainty not in CERTAINTIES:
        raise AdviceError(f"{path}.certainty", f"{certainty!r}; expected one of {', '.join(CERTAINTIES)}")
    return {"code": code, "title": title, "certainty": certainty, "note": _text(doc, "note", path, required=False)}


def _note(doc: dict[str, Any], path: str) -> dict[str, Any]:
    _only(doc, ("text",), path)
    return {"text": _text(doc, "text", path)}


_PARSERS = {ItemKind.DRUG: _drug, ItemKind.PROCEDURE: _procedure, ItemKind.DIAGNOSIS: _diagnosis,
            ItemKind.NOTE: _note}


def validate(items: Any) -> list[AdviceItem]:
    """The expert's advice, checked and normalised, in the order given."""
    if not isinstance(items, list):
        raise AdviceError("items", "expected a list of advice items")
    if len(items) > MAX_ITEMS:
        raise AdviceError("items", f"at most {MAX_ITEMS} items")
    checked = []
    for i, doc in enumerate(items):
        path = f"items[{i}]"
        if not isinstance(doc, dict):
            raise AdviceError(path, "expected an object with a kind")
        try:
            kind = ItemKind(str(doc.get("kind")))
        except ValueError:
            raise AdviceError(f"{path}.kind", f"{doc.get('kind')!r}; expected one of "
                                              f"{', '.join(k.value for k in ItemKind)}") from None
        checked.append(AdviceItem(kind, _PARSERS[kind](doc, path)))
    return checked
