"""Parsing what the schedule's pages and API are given: rule lines, local date-times, proposal requests."""

from __future__ import annotations

from datetime import date, datetime
from zoneinfo import ZoneInfo

import pytest

from hq import schedule_input as si
from hq import slots
from hq.query_params import ParamError

NOW = int(datetime(2030, 1, 7, 8, tzinfo=ZoneInfo("UTC")).timestamp() * 1000)


def query(**params: str) -> si.ProposalQuery:
    return si.proposal_query(params, now=NOW, days=14, limit=6, per_expert=3, min_notice_s=600)


def test_rule_lines_read_and_write_back() -> None:
    text = "# my week\nMon 09:00-12:00 30\n\nsunday 22:00-2:00 60 from 2030-01-01 until 2030-06-30\n"
    rules = si.parse_rule_lines(text)
    assert rules == [{"weekday": 0, "start": "09:00", "end": "12:00", "slot_minutes": 30},
                     {"weekday": 6, "start": "22:00", "end": "02:00", "slot_minutes": 60,
                      "valid_from": "2030-01-01", "valid_until": "2030-06-30"}]
    parsed = [slots.make_rule(r["weekday"], r["start"], r["end"], r["slot_minutes"],
                              date.fromisoformat(r["valid_from"]) if "valid_from" in r else None,
                              date.fromisoformat(r["valid_until"]) if "valid_until" in r else None) for r in rules]
    assert si.rule_lines(parsed) == ("Mon 09:00-12:00 30\n"
                                     "Sun 22:00-02:00 60 from 2030-01-01 until 2030-06-30")


@pytest.mark.parametrize(("text", "message"), [
    ("Mon 9-12 30", "line 1 'Mon 9-12 30': expected WEEKDAY HH:MM-HH:MM MINUTES"),
    ("\nFunday 09:00-12:00 30", "line 2: 'Funday' is not a weekday"),
    ("Mo 09:00-12:00", "line 1"),
])
def test_bad_rule_lines_name_the_line(text: str, message: str) -> None:
    with pytest.raises(si.InputError, match=message):
        si.parse_rule_lines(text)


def test_local_instants_follow_the_zone_and_its_gaps() -> None:
    berlin = ZoneInfo("Europe/Berlin")
    assert si.local_instant("2030-01-07T09:00", berlin, "starts") == NOW
    # 02:30 does not exist in Berlin on 31 March 2030: it means 03:00 CEST, when the clock jumps.
    assert si.local_instant("2030-03-31T02:30", berlin, "starts") == \
        int(datetime(2030, 3, 31, 1, tzinfo=ZoneInfo("UTC")).timestamp() * 1000)
    assert si.local_input_value(NOW, berlin) == "2030-01-07T09:00"
    with pytest.raises(si.InputError, match="starts 'monday': expected a date and time"):
        si.local_instant("monday", berlin, "starts")
    with pytest.raises(si.InputError, match="multiple of 5"):
        si.local_instant("2030-01-07T09:03", berlin, "starts")


def test_proposal_requests_with_defaults_and_clinic_hours() -> None:
    plain = query(department="心内科")
    assert plain.department == "心内科" and plain.expert_id is None
    assert plain.request.not_before_ms == NOW + 600_000 and plain.request.limit == 6
    assert plain.request.per_expert == 3
    assert query(expert_id="4").request.per_expert == 6  # one expert: every proposal may be theirs
    local = query(department="cardiology", tz="Asia/Shanghai", not_before="2030-01-09", days="2",
                  hours_start="08:00", hours_end="12:00", minutes="45")
    start = int(datetime(2030, 1, 9, tzinfo=ZoneInfo("Asia/Shanghai")).timestamp() * 1000)
    assert local.request.not_before_ms == start and local.request.not_after_ms == start + 2 * 86_400_000
    assert local.request.hours is not None and local.request.hours.tz.key == "Asia/Shanghai"
    assert local.request.min_minutes == 45
    assert query(department="x", not_before="2020-01-01").request.not_before_ms == NOW + 600_000  # not the past


@pytest.mark.parametrize(("params", "parameter"), [
    ({}, "department"),
    ({"department": "x", "bogus": "1"}, "bogus"),
    ({"expert_id": "abc"}, "expert_id"),
    ({"department": "x", "tz": "Mars/Base"}, "tz"),
    ({"department": "x", "days": "61"}, "days"),
    ({"department": "x", "not_before": "next week"}, "not_before"),
    ({"department": "x", "hours_start": "08:00"}, "hours_end"),
    ({"department": "x", "hours_start": "08:00", "hours_end": "08:00"}, "hours_start"),
])
def test_bad_proposal_requests_name_the_parameter(params: dict[str, str], parameter: str) -> None:
    with pytest.raises(ParamError) as caught:
        query(**params)
    assert caught.value.parameter == parameter


def test_body_fields() -> None:
    assert si.body_int({"n": "12"}, "n") == 12 and si.body_int({}, "n", required=False) is None
    with pytest.raises(si.InputError, match="n: expected an integer"):
        si.body_int({"n": 1.5}, "n")
    assert si.body_instant({"t": "2030-01-07T08:00:00Z"}, "t") == NOW
    assert si.body_instant({"t": str(NOW)}, "t") == NOW
    with pytest.raises(si.InputError, match=r"t: .* has no UTC offset"):
        si.body_instant({"t": "2030-01-07T08:00:00"}, "t")
    assert si.body_text({"s": "  hi "}, "s") == "hi" and si.body_text({"s": "  "}, "s") is None
