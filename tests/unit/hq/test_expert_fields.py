"""Profile fields are normalised or refused with the field, what was wrong and what was expected."""

from __future__ import annotations

from datetime import date

import pytest

from hq import expert_fields as f
from hq.expert_fields import FieldProblem


def problem(fn: object, *args: object) -> FieldProblem:
    with pytest.raises(FieldProblem) as caught:
        fn(*args)  # type: ignore[operator]
    return caught.value


def test_languages_accept_tags_and_names_in_chinese_and_english() -> None:
    assert f.languages("zh; en") == ["zh", "en"]
    assert f.languages("中文、英语") == ["zh", "en"]
    assert f.languages("Chinese, english | zh") == ["zh", "en"]
    assert f.languages("zh_cn;ZH-hant-tw;粤语") == ["zh-CN", "zh-Hant-TW", "yue"]
    assert f.languages(["en", "fr"]) == ["en", "fr"]
    bad = problem(f.languages, "zh; Klingon!")
    assert (bad.field, bad.message) == ("languages", "'Klingon!' is not a language tag or a known language name")
    assert "BCP 47" in bad.expected
    assert problem(f.languages, " ; ").message == "no language given"


def test_time_zones_are_iana_names() -> None:
    assert f.time_zone(" Asia/Shanghai ") == "Asia/Shanghai"
    bad = problem(f.time_zone, "Beijing")
    assert bad.message == "'Beijing' is not a known time zone" and "Asia/Shanghai" in bad.expected
    assert problem(f.time_zone, "../../etc/passwd").field == "time_zone"


def test_tags_are_keyed_by_their_normal_form_first_spelling_wins() -> None:
    assert f.tags("Heart Failure; heart  failure; 心衰，ECG") == {"heart failure": "Heart Failure", "心衰": "心衰",
                                                                 "ecg": "ECG"}
    assert f.tags("") == {}
    assert problem(f.tags, ";".join(f"t{i}" for i in range(60))).message == "60 tags"


def test_daily_cap_is_a_small_whole_number() -> None:
    assert f.daily_cap("８") == 8 and f.daily_cap(0) == 0
    for bad in ("-1", "8.5", "lots", "101", True):
        assert problem(f.daily_cap, bad).field == "daily_cap"


def test_dates_iso_and_spreadsheet_forms_but_never_ambiguous_ones() -> None:
    assert f.iso_date("2027-06-30", "expires_on") == date(2027, 6, 30)
    assert f.iso_date("2027/6/30", "x") == f.iso_date("2027.06.30", "x") == f.iso_date("2027年6月30日", "x")
    assert "day-first or month-first" in problem(f.iso_date, "06/07/2027", "expires_on").message
    assert "not a real date" in problem(f.iso_date, "2027-02-30", "expires_on").message
    assert problem(f.iso_date, "next year", "expires_on").expected == f.DATE_EXPECTED


def test_text_is_one_trimmed_line() -> None:
    assert f.text("name", "  Dr. Li  ", max_length=20) == "Dr. Li"
    with pytest.raises(FieldProblem, match="name: is empty"):
        f.text("name", "  ", max_length=20, required=True)
    with pytest.raises(FieldProblem, match="line break"):
        f.text("name", "Dr.\nLi", max_length=20)
    with pytest.raises(FieldProblem, match="at most 5"):
        f.text("title", "Professor", max_length=5)
    assert f.text("scope_of_practice", "a\nb", max_length=50) == "a\nb"


def test_yes_no() -> None:
    assert f.yes_no("是", "active") and not f.yes_no("FALSE", "active")
    assert problem(f.yes_no, "maybe", "active").field == "active"
