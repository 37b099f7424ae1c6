"""HL7 v2 syntax: delimiters, escapes, segments and DTM times."""

from datetime import UTC, datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import pytest

from devices.hl7_message import (
    Delimiters,
    Hl7SyntaxError,
    Segment,
    escape,
    format_dtm,
    parse_delimiters,
    parse_dtm,
    split_segments,
    unescape,
)

D = Delimiters()


def test_delimiters_come_from_msh() -> None:
    assert parse_delimiters("MSH|^~\\&|APP") == D
    assert parse_delimiters("MSH#*@!%#APP") == Delimiters("#", "*", "@", "!", "%")


@pytest.mark.parametrize("msh", ["MSA|AA", "MSHA^~\\&", "MSH||", "MSH|^^\\&|", "MSH|"])
def test_bad_msh_is_a_syntax_error(msh: str) -> None:
    with pytest.raises(Hl7SyntaxError):
        parse_delimiters(msh)


def test_escape_sequences_are_resolved() -> None:
    assert unescape(r"a\F\b\S\c\T\d\R\e\E\f", D) == "a|b^c&d~e\\f"
    assert unescape("\\X0D0A\\", D) == "\r\n"
    assert unescape(r"line1\.br\line2", D) == "line1\nline2"
    assert unescape("\\H\\bold\\N\\", D) == "bold"
    assert unescape("unterminated \\F", D) == "unterminated \\F"
    assert unescape("plain", D) == "plain"


def test_escape_round_trips_through_unescape() -> None:
    text = "a|b^c&d~e\\f\r\ng"
    assert unescape(escape(text, D), D) == text
    custom = Delimiters("#", "*", "@", "!", "%")
    assert unescape(escape("x#y*z", custom), custom) == "x#y*z"


def test_segment_fields_follow_hl7_numbering() -> None:
    msh = Segment("MSH|^~\\&|APP|FAC|||20261121||ORU^R01|ID1", D)
    assert msh[1] == "|"
    assert msh[2] == "^~\\&"
    assert msh[3] == "APP"
    assert msh.component(9, 2) == "R01"
    pid = Segment(r"PID|||MRN\S\1^^^HOSP~OTHER^^^X", D)
    assert pid.component(3, 1) == "MRN^1"
    assert pid.component(3, 1, repetition=1) == "OTHER"
    assert pid[40] == ""


def test_segments_split_on_cr_lf_and_crlf() -> None:
    assert [s for _, s in split_segments("A\rB\nC\r\nD\r\n\r\n")] == ["A", "B", "C", "D"]


def test_dtm_with_and_without_offset() -> None:
    berlin = ZoneInfo("Europe/Berlin")
    assert parse_dtm("20261121143055.123+0000", berlin) == datetime(2026, 11, 21, 14, 30, 55, 123000, tzinfo=UTC)
    assert parse_dtm("20261121143055-0500", berlin) == datetime(
        2026, 11, 21, 14, 30, 55, tzinfo=timezone(timedelta(hours=-5))
    )
    assert parse_dtm("20261121143055", berlin).astimezone(UTC) == datetime(2026, 11, 21, 13, 30, 55, tzinfo=UTC)
    assert parse_dtm("2026", berlin) == datetime(2026, 1, 1, tzinfo=berlin)
    assert parse_dtm("202611211430", UTC) == datetime(2026, 11, 21, 14, 30, tzinfo=UTC)


@pytest.mark.parametrize(
    "text",
    [
        "",
        "abc",
        "2026-11-21",
        "20261321",
        "202611211",
        "20261121143055.12345",
        "20261121143055+99",
        "20261121143055+2500",
        "2026112114305.1",
    ],
)
def test_invalid_dtm_raises_value_error(text: str) -> None:
    with pytest.raises(ValueError):
        parse_dtm(text, UTC)


def test_format_dtm_is_utc_with_milliseconds() -> None:
    t = datetime(2026, 11, 21, 15, 30, 55, 123456, tzinfo=ZoneInfo("Europe/Berlin"))
    assert format_dtm(t) == "20261121143055.123+0000"
