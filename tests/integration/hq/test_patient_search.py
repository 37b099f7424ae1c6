"""Patient search on SQLite and PostgreSQL: Chinese and Latin names by any word and prefix, national id, record
number prefix, every term required, identifiers ranked first, limited to what the asker may see."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import sqlalchemy as sa

from hq import patient_search, records
from hq.auth import Actor, Role
from tests.integration.hq.records_support import T0, schema_engine


@pytest.fixture
def engine(db_url: str) -> Iterator[sa.Engine]:
    with schema_engine(db_url) as e:
        with e.begin() as conn:
            reg = records.register_patient
            reg(conn, "clinic-a", "A-0001", name="张伟", alt_name="Zhang Wei", national_id="11010519900307123X",
                sex="M", now=T0)
            reg(conn, "clinic-a", "A-0002", name="张伟明", alt_name="Zhang Weiming", now=T0)
            reg(conn, "clinic-b", "B-0001", name="李娜", alt_name="Li Na", now=T0)
            reg(conn, "clinic-b", "B-0002", name="Anna Müller", family_name="Müller", given_name="Anna", now=T0)
            reg(conn, "clinic-b", "B-0003", name="欧阳娜娜", alt_name="Ouyang Nana", now=T0)
            reg(conn, "clinic-a", "A-1000", name="Wei Zhang", now=T0)  # a Latin name with the words the other way
        yield e


def names(engine: sa.Engine, query: str, actor: Actor | None = None) -> list[str]:
    with engine.connect() as conn:
        return [row["name"] for row in patient_search.describe(conn, patient_search.find(conn, query, actor=actor))]


@pytest.mark.parametrize(("query", "expected"), [
    ("张伟", ["张伟", "张伟明"]),  # the whole name is a prefix of 张伟明's
    ("张", ["张伟", "张伟明"]),  # a surname
    ("伟", ["张伟", "张伟明"]),  # a given name (伟, 伟明)
    ("伟明", ["张伟明"]),
    ("娜", ["欧阳娜娜", "李娜"]),  # 欧阳 is a two-character surname: the given name is 娜娜
    ("欧阳", ["欧阳娜娜"]),
    ("zhang wei", ["张伟", "张伟明", "Wei Zhang"]),  # words in any order, by prefix ("wei" of "weiming")
    ("Wei Zhang", ["张伟", "张伟明", "Wei Zhang"]),
    ("zhangwei", ["张伟", "张伟明", "Wei Zhang"]),  # typed without the space
    ("muller", ["Anna Müller"]),  # without the umlaut
    ("ANNA m", ["Anna Müller"]),
    ("11010519900307123x", ["张伟"]),  # national id, any case
    ("110105", ["张伟"]),  # and its prefix
    ("a-000", ["张伟", "张伟明"]),  # record number prefix, punctuation ignored
    ("B0003", ["欧阳娜娜"]),
    ("li zhang", []),  # every term must match
    ("  ", []),
    ("nobody", []),
])
def test_search_finds_by_name_in_both_scripts_national_id_and_record_number(
        engine: sa.Engine, query: str, expected: list[str]) -> None:
    assert sorted(names(engine, query)) == sorted(expected)


def test_an_identifier_match_ranks_before_name_matches(engine: sa.Engine) -> None:
    with engine.begin() as conn:
        records.register_patient(conn, "clinic-b", "ANNA", name="Somebody Else", now=T0)
    assert names(engine, "anna")[0] == "Somebody Else"


def test_clinic_staff_find_only_their_clinics_patients(engine: sa.Engine) -> None:
    staff_b = Actor(1, "nurse", "Nurse", Role.CLINIC_STAFF, clinic_id="clinic-b")
    assert names(engine, "zhang", staff_b) == []
    assert sorted(names(engine, "na", staff_b)) == sorted(["欧阳娜娜", "李娜"])  # Nana and Li Na; not Anna
    assert names(engine, "anna", staff_b) == ["Anna Müller"]
    expert = Actor(2, "dr", "Dr", Role.EXPERT, expert_id=None)
    assert names(engine, "na", expert) == []


def test_a_merged_away_record_is_not_found_but_its_name_finds_the_survivor(engine: sa.Engine) -> None:
    from hq import patient_merge

    with engine.begin() as conn:
        survivor = records.patient_for_mrn(conn, "clinic-a", "A-1000")
        duplicate = records.patient_for_mrn(conn, "clinic-a", "A-0002")
        assert survivor is not None and duplicate is not None
        patient_merge.merge(conn, survivor, duplicate, by_user_id=None, reason="test", now=T0)
    assert names(engine, "zhang weiming") == ["Wei Zhang"]
    assert names(engine, "a-0002") == ["Wei Zhang"]


def test_words_that_are_not_a_phrase_still_match_each_by_prefix(engine: sa.Engine) -> None:
    assert sorted(names(engine, "zhan wei")) == sorted(["张伟", "张伟明", "Wei Zhang"])  # no key starts "zhanwei"
    assert names(engine, "weim zh") == ["张伟明"]


def test_a_visit_at_a_clinic_makes_the_patient_findable_by_its_staff(engine: sa.Engine) -> None:
    staff_b = Actor(1, "nurse", "Nurse", Role.CLINIC_STAFF, clinic_id="clinic-b")
    assert names(engine, "张伟", staff_b) == []
    with engine.begin() as conn:
        pid = records.patient_for_mrn(conn, "clinic-a", "A-0001")
        assert pid is not None
        records.record_visit(conn, pid, "clinic-b", started_ms=T0)
    assert names(engine, "张伟", staff_b) == ["张伟"]
