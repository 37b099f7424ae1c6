"""The pure rules of patient identity: normalisation in any script, search keys and query terms, validation
with errors naming the field, and the registration decision (matched, created, never merged silently)."""

from __future__ import annotations

import datetime as dt

import pytest
from hypothesis import given
from hypothesis import strategies as st

from hq import patient_matching as rules
from hq.patient_matching import Action, Candidate, Demographics, Gender, PatientDataError

TODAY = dt.date(2026, 12, 1)


@pytest.mark.parametrize(("text", "expected"), [
    ("Zhang Wei", "zhangwei"),
    ("  José  O'Brien-Smith ", "joseobriensmith"),
    ("ＺＨＡＮＧ　Ｗｅｉ１２", "zhangwei12"),  # full-width letters, digits and space
    ("张 伟", "张伟"),
    ("Müller", "muller"),
    ("STRASSE", "strasse"),
])
def test_normalise_folds_case_width_accents_and_punctuation(text: str, expected: str) -> None:
    assert rules.normalise(text) == expected


def test_tokens_split_on_spaces_and_punctuation_of_both_scripts() -> None:
    assert rules.tokens("Zhang, Wei") == ["zhang", "wei"]
    assert rules.tokens("欧阳·娜娜") == ["欧阳", "娜娜"]
    assert rules.tokens("  ") == []


def test_search_keys_of_a_chinese_and_latin_name_with_ids() -> None:
    keys = rules.search_keys(rules.KeySource(names=("张伟", "Zhang Wei"), national_id="11010519900307123X",
                                             mrns=("P-N-0001",)))
    assert keys == {
        "张伟": "name", "伟": "name",  # whole name and the given name (surname is the first character)
        "zhangwei": "name", "zhang": "name", "wei": "name", "weizhang": "name",
        "11010519900307123x": "nid", "pn0001": "mrn",
    }


def test_an_identifier_key_wins_over_the_same_name_key() -> None:
    keys = rules.search_keys(rules.KeySource(names=("A1",), mrns=("a1",)))
    assert keys == {"a1": rules.KeyKind.MRN}


def test_keys_are_cut_to_the_column_width() -> None:
    keys = rules.search_keys(rules.KeySource(names=("x" * 300,)))
    assert list(keys) == ["x" * rules.KEY_MAX]


def test_query_terms_longest_first_without_redundant_prefixes() -> None:
    assert rules.query_terms("zhang zhangwei W") == ["zhangwei", "w"]
    assert rules.query_terms("Wei ZHANG") == ["zhang", "wei"]
    assert rules.query_terms("  ,, ") == []
    assert len(rules.query_terms("a b c d e f g")) == 4


@given(st.text(min_size=1, max_size=6).filter(lambda t: t[-1] != chr(0x10FFFF)),
       st.text(max_size=4))
def test_successor_bounds_every_extension_of_a_term(term: str, extension: str) -> None:
    upper = rules.successor(term)
    assert term <= term + extension < upper


def test_successor_of_the_last_code_point_carries_left() -> None:
    assert rules.successor("a" + chr(0x10FFFF)) == "b"
    assert rules.successor("张") == chr(ord("张") + 1)


@pytest.mark.parametrize(("value", "expected"), [
    ("F", Gender.FEMALE), ("female", Gender.FEMALE), ("女", Gender.FEMALE), ("M", Gender.MALE),
    ("男", Gender.MALE), ("unknown", Gender.UNKNOWN), ("", None), (None, None)])
def test_gender_words(value: str | None, expected: Gender | None) -> None:
    assert rules.parse_gender(value) == expected


def test_bad_fields_are_named() -> None:
    with pytest.raises(PatientDataError, match=r"^sex: 'x' is not one of") as exc:
        rules.parse_gender("x")
    assert exc.value.field == "sex"
    with pytest.raises(PatientDataError, match="birth_date: '1990-13-01' is not a date"):
        rules.parse_birth_date("1990-13-01", today=TODAY)
    with pytest.raises(PatientDataError, match="birth_date: 2027-01-01 is in the future"):
        rules.parse_birth_date("2027-01-01", today=TODAY)
    with pytest.raises(PatientDataError, match=r"national_id: .* letters and digits"):
        rules.normalise_national_id("1101*0519")
    with pytest.raises(PatientDataError, match="mrn: is empty"):
        rules.clean_mrn("   ")
    with pytest.raises(PatientDataError, match="name: is empty"):
        rules.display_name(None, " ", None)


def test_national_id_and_display_name_normalisation() -> None:
    assert rules.normalise_national_id("110105 19900307 123x") == "11010519900307123X"
    assert rules.display_name(None, "张", "伟") == "张伟"
    assert rules.display_name(None, "Smith", "Anna") == "Anna Smith"
    assert rules.display_name("  Li   Na ", "Li", "Na") == "Li Na"


# ---- the registration decision --------------------------------------------------------------
ZHANG = Demographics(name="张伟", family_name="张", given_name="伟", sex=Gender.MALE,
                     birth_date=dt.date(1990, 3, 7), national_id="11010519900307123X")


def candidate(pid: int, **changes: object) -> Candidate:
    fields = {"name": ZHANG.name, "family_name": "张", "given_name": "伟", "sex": ZHANG.sex,
              "birth_date": ZHANG.birth_date, "national_id": ZHANG.national_id, **changes}
    return Candidate(pid, Demographics(**fields))  # type: ignore[arg-type]


def test_nothing_known_creates_a_record_with_both_identifiers() -> None:
    d = rules.decide(ZHANG, None, None)
    assert (d.action, d.attach_mrn, d.set_national_id, d.duplicates, d.outcome) == (
        Action.CREATE, True, True, (), "created")


def test_the_national_id_finds_the_patient_at_another_clinic_and_the_number_is_attached() -> None:
    d = rules.decide(ZHANG, candidate(7), None)
    assert (d.action, d.patient_id, d.attach_mrn, d.duplicates, d.outcome) == (Action.USE, 7, True, (), "matched")


def test_national_id_and_number_on_two_records_is_a_duplicate_candidate_not_a_merge() -> None:
    d = rules.decide(ZHANG, candidate(7), candidate(9, national_id=None))
    assert d.action is Action.USE and d.patient_id == 7 and d.attach_mrn is False
    assert [dup.other_id for dup in d.duplicates] == [9]
    assert d.outcome == "matched_possible_duplicate"


def test_a_national_id_with_conflicting_demographics_is_not_trusted() -> None:
    d = rules.decide(ZHANG, candidate(7, birth_date=dt.date(1950, 1, 1), name="李娜", family_name="李",
                                      given_name="娜"), None)
    assert d.action is Action.CREATE and d.set_national_id is False and d.attach_mrn is True
    assert d.duplicates[0].other_id == 7
    assert "birth date 1990-03-07 vs 1950-01-01" in d.duplicates[0].reason
    assert "name" in d.duplicates[0].reason


def test_the_record_number_finds_the_patient_and_gives_it_the_free_national_id() -> None:
    d = rules.decide(ZHANG, None, candidate(9, national_id=None, phone=None))
    assert (d.action, d.patient_id, d.attach_mrn, d.set_national_id) == (Action.USE, 9, False, True)


def test_a_record_number_holding_another_national_id_makes_a_new_record() -> None:
    d = rules.decide(ZHANG, None, candidate(9, national_id="999"))
    assert d.action is Action.CREATE and d.attach_mrn is False and d.set_national_id is True
    assert "national id 11010519900307123X vs 999" in d.duplicates[0].reason


def test_a_provisional_record_from_device_readings_takes_the_checkin_demographics() -> None:
    provisional = Candidate(3, Demographics(), provisional=True)
    d = rules.decide(ZHANG, None, provisional)
    assert (d.action, d.patient_id, d.set_national_id) == (Action.USE, 3, True)
    assert d.fill["name"] == "张伟" and d.fill["birth_date"] == dt.date(1990, 3, 7) and d.fill["sex"] == Gender.MALE


def test_blank_fields_are_filled_but_known_ones_never_overwritten() -> None:
    d = rules.decide(Demographics(name="Anna Smith", phone="123", sex=Gender.FEMALE), None,
                     Candidate(5, Demographics(name="Anna Smith", sex=Gender.FEMALE, phone=None)))
    assert d.fill == {"phone": "123"}


def test_names_in_two_scripts_do_not_conflict_but_two_latin_names_do() -> None:
    chinese = Demographics(name="张伟")
    assert rules.conflicts(chinese, Demographics(name="Zhang Wei")) == []
    assert rules.conflicts(Demographics(name="Wei Zhang"), Demographics(name="ZHANG wei")) == []
    assert rules.conflicts(Demographics(name="Anna Smith"), Demographics(name="Anna Smyth")) == [
        "name 'Anna Smith' vs 'Anna Smyth'"]
    # the Latin name is compared with the other record's Latin alternative name
    assert rules.conflicts(Demographics(name="张伟", alt_name="Zhang Wei"),
                           Demographics(name="张伟", alt_name="Li Na")) == []
    assert rules.conflicts(Demographics(name="Zhang Wei"), Demographics(name="张伟", alt_name="Li Na")) == [
        "name 'Zhang Wei' vs '张伟'"]


def test_unknown_sex_never_conflicts() -> None:
    assert rules.conflicts(Demographics(sex=Gender.UNKNOWN), Demographics(sex=Gender.MALE)) == []
    assert rules.conflicts(Demographics(sex=Gender.FEMALE), Demographics(sex=Gender.MALE)) == ["sex female vs male"]


def test_a_repeated_conflicting_registration_finds_the_record_it_made_before() -> None:
    maria = Demographics(name="Maria Lopez", birth_date=dt.date(1975, 5, 5))
    anna = Candidate(1, Demographics(name="Anna Smith", birth_date=dt.date(1980, 1, 2)))
    earlier = Candidate(2, Demographics(name="LOPEZ Maria", birth_date=dt.date(1975, 5, 5)))
    unnamed = Candidate(3, Demographics(), provisional=True)
    d = rules.decide(maria, None, anna, earlier_duplicates=(unnamed, earlier))
    assert (d.action, d.patient_id, d.attach_mrn) == (Action.USE, 2, False)
    assert [dup.other_id for dup in d.duplicates] == [1]
    # a record without a name is never "positively the same person"
    assert rules.decide(maria, None, anna, earlier_duplicates=(unnamed,)).action is Action.CREATE


def test_the_given_name_of_a_chinese_name_knows_two_character_surnames() -> None:
    assert rules.han_given_name("张伟") == "伟"
    assert rules.han_given_name("欧阳娜娜") == "娜娜"
    assert rules.han_given_name("欧阳") == "阳"  # too short for a compound surname: 欧 + 阳
    assert rules.han_given_name("zhangwei") is None
    assert rules.han_given_name("张") is None
