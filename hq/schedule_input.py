"""What the schedule's pages and API are given, parsed and checked: weekly rules typed as lines, local
date-times of forms, a clinic's proposal request, JSON bodies. Pure; every error names its field or line.

Not the rules themselves (`hq.slots`) nor the handlers (`hq.console.schedule`).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from hq import slots
from hq.query_params import ISO_EXPECTED, ParamError, parse_instant

DAY_NAMES = {name.lower()[:3]: i for i, name in enumerate(slots.WEEKDAYS)}
LINE_FORM = "WEEKDAY HH:MM-HH:MM MINUTES [from YYYY-MM-DD] [until YYYY-MM-DD], e.g. 'Mon 09:00-12:00 30'"
_LINE = re.compile(r"(?P<day>[A-Za-z]+)\s+(?P<start>\d{1,2}:\d{2})\s*-\s*(?P<end>\d{1,2}:\d{2})\s+(?P<slot>\d+)"
                   r"(?:\s+from\s+(?P<from>\S+))?(?:\s+until\s+(?P<until>\S+))?")
MAX_DAYS = 60
MAX_PROPOSALS = 50
PROPOSAL_PARAMETERS = ("department", "expert_id", "not_before", "days", "minutes", "language", "tz", "hours_start",
                       "hours_end", "limit", "per_expert")


class InputError(ValueError):
    """A form or body field is wrong; `field` names it."""

    def __init__(self, message: str, field: str) -> None:
        super().__init__(message)
        self.field = field


# ---- weekly rules as lines ---------------------------------------------------------------------
def parse_rule_lines(text: str) -> list[dict[str, Any]]:
    """One rule per line ("Mon 09:00-12:00 30", "Sun 22:00-02:00 60 from 2030-01-01"); blank lines and lines
    starting with # are skipped. Returns rules in the API's form; `hq.scheduling.parse_rules` checks them."""
    rules = []
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        match = _LINE.fullmatch(line)
        if match is None:
            raise InputError(f"line {number} {line!r}: expected {LINE_FORM}", "rules")
        day = DAY_NAMES.get(match["day"].lower()[:3])
        if day is None or not slots.WEEKDAYS[day].lower().startswith(match["day"].lower()):
            raise InputError(f"line {number}: {match['day']!r} is not a weekday (Mon, Tue, ... or Monday, ...)",
                             "rules")
        rule: dict[str, Any] = {"weekday": day, "start": match["start"].zfill(5), "end": match["end"].zfill(5),
                                "slot_minutes": int(match["slot"])}
        for key, name in (("from", "valid_from"), ("until", "valid_until")):
            if match[key]:
                rule[name] = match[key]
        rules.append(rule)
    return rules


def rule_lines(rules: Sequence[slots.WeeklyRule]) -> str:
    lines = []
    for r in rules:
        line = f"{slots.WEEKDAYS[r.weekday][:3]} {slots.format_minute(r.start)}-{slots.format_minute(r.end)} " \
               f"{r.slot_minutes}"
        if r.valid_from:
            line += f" from {r.valid_from.isoformat()}"
        if r.valid_until:
            line += f" until {r.valid_until.isoformat()}"
        lines.append(line)
    return "\n".join(lines)


# ---- local date-times -------------------------------------------------------------------------
def local_instant(text: str, tz: ZoneInfo, field: str) -> int:
    """A form's "YYYY-MM-DDTHH:MM" wall time in `tz` as Unix ms (a time in a DST gap: when the clock jumps)."""
    value = (text or "").strip()
    try:
        t = datetime.fromisoformat(value)
    except ValueError:
        raise InputError(f"{field} {value!r}: expected a date and time YYYY-MM-DDTHH:MM", field) from None
    if t.tzinfo is not None:
        return int(t.timestamp() * 1000)
    if t.second or t.microsecond or t.minute % slots.UNIT_MINUTES:
        raise InputError(f"{field} {value!r}: minutes must be a multiple of {slots.UNIT_MINUTES}", field)
    return slots.local_ms(t.date(), t.hour * 60 + t.minute, tz)


def local_input_value(ms: int, tz: ZoneInfo) -> str:
    """The value of a datetime-local input showing `ms` in `tz`."""
    return datetime.fromtimestamp(ms / 1000, tz).strftime("%Y-%m-%dT%H:%M")


def zone_param(params: Mapping[str, str], name: str = "tz") -> ZoneInfo:
    text = params.get(name) or "UTC"
    try:
        return slots.zone(text)
    except slots.RuleError:
        raise ParamError(name, f"{text!r} is not an IANA time zone", "a zone name such as Asia/Shanghai") from None


# ---- a clinic's request ------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class ProposalQuery:
    department: str | None
    expert_id: int | None
    language: str | None
    request: slots.SlotRequest


def int_param(params: Mapping[str, str], name: str, default: int, lo: int, hi: int) -> int:
    text = params.get(name)
    if text in (None, ""):
        return default
    if not text.isascii() or not text.isdigit() or not lo <= int(text) <= hi:
        raise ParamError(name, f"{text!r} is not a whole number from {lo} to {hi}", f"an integer {lo}-{hi}")
    return int(text)


def proposal_query(params: Mapping[str, str], *, now: int, days: int, limit: int, per_expert: int,
                   min_notice_s: int) -> ProposalQuery:
    """`params`: department (any of its names) or expert_id; not_before (ISO 8601 with offset, or a date
    YYYY-MM-DD in `tz`; default: now plus the minimum notice); days, minutes, language; the clinic's daily
    hours hours_start/hours_end in `tz`; limit, per_expert. Unknown parameters are refused."""
    for name in params:
        if name not in PROPOSAL_PARAMETERS:
            raise ParamError(name, f"unknown parameter {name!r}", "one of " + ", ".join(PROPOSAL_PARAMETERS))
    department = (params.get("department") or "").strip() or None
    expert_text = (params.get("expert_id") or "").strip()
    if expert_text and (not expert_text.isascii() or not expert_text.isdigit()):
        raise ParamError("expert_id", f"{expert_text!r} is not an expert id", "an integer")
    expert_id = int(expert_text) if expert_text else None
    if department is None and expert_id is None:
        raise ParamError("department", "ask by department or by expert", "department=NAME or expert_id=ID")
    tz = zone_param(params)
    earliest = now + min_notice_s * 1000
    not_before = earliest
    text = (params.get("not_before") or "").strip()
    if text:
        if "T" in text.upper():
            not_before = parse_instant({"not_before": text}, "not_before") or earliest
        else:
            try:
                day = date.fromisoformat(text)
            except ValueError:
                raise ParamError("not_before", f"{text!r} is neither a date nor a date-time",
                                 f"YYYY-MM-DD (in tz) or {ISO_EXPECTED}") from None
            not_before = slots.local_ms(day, 0, tz)
        not_before = max(not_before, earliest)
    span_days = int_param(params, "days", days, 1, MAX_DAYS)
    minutes = int_param(params, "minutes", 0, 0, slots.MAX_SLOT_MINUTES)
    hours = None
    start_text, end_text = (params.get("hours_start") or "").strip(), (params.get("hours_end") or "").strip()
    if start_text or end_text:
        if not (start_text and end_text):
            raise ParamError("hours_end" if start_text else "hours_start", "give both ends of the clinic's hours",
                             "hours_start=HH:MM&hours_end=HH:MM")
        try:
            hours = slots.make_hours(tz.key, start_text, end_text)
        except slots.RuleError as exc:
            raise ParamError("hours_start", str(exc), "HH:MM on the 5-minute grid") from None
    most = int_param(params, "limit", limit, 1, MAX_PROPOSALS)
    # Asking for one expert: all the proposals may be theirs.
    each = int_param(params, "per_expert", most if expert_id is not None else per_expert, 1, MAX_PROPOSALS)
    request = slots.SlotRequest(not_before, not_before + int(timedelta(days=span_days).total_seconds() * 1000),
                                minutes, hours, most, each)
    language = (params.get("language") or "").strip() or None
    return ProposalQuery(department, expert_id, language, request)


# ---- JSON bodies and forms ------------------------------------------------------------------
def body_int(body: Mapping[str, Any], name: str, *, required: bool = True) -> int | None:
    value = body.get(name)
    if value in (None, "") and not required:
        return None
    if isinstance(value, str) and value.strip().isdigit():
        return int(value)
    if not isinstance(value, int) or isinstance(value, bool):
        raise InputError(f"{name}: expected an integer, not {value!r}", name)
    return value


def body_text(body: Mapping[str, Any], name: str) -> str | None:
    value = body.get(name)
    if value is None:
        return None
    if not isinstance(value, str):
        raise InputError(f"{name}: expected text, not {value!r}", name)
    return value.strip() or None


def body_instant(body: Mapping[str, Any], name: str, *, required: bool = True) -> int | None:
    """An ISO 8601 date-time with an offset (a form's may also be Unix ms as digits)."""
    value = body.get(name)
    if value in (None, "") and not required:
        return None
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, str) and value.isdigit():
        return int(value)
    if not isinstance(value, str):
        raise InputError(f"{name}: expected {ISO_EXPECTED}", name)
    try:
        found = parse_instant({name: value}, name)
    except ParamError as exc:
        raise InputError(f"{name}: {exc.message}; expected {exc.expected}", name) from None
    assert found is not None
    return found
