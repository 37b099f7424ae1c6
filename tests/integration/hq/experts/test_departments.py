"""The department taxonomy in a real database (SQLite and PostgreSQL): seeded by the migrations, any synonym
resolves to its department, coordinators' synonyms and departments, heads."""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from hq import accounts, departments
from hq.departments import DepartmentError
from hq.models import department_synonyms


def test_every_name_of_cardiology_resolves_to_one_department(engine: sa.Engine) -> None:
    with engine.connect() as conn:
        cardiology = departments.resolve(conn, "cardiology")
        assert cardiology is not None
        for name in ("心血管内科", "心内科", "心脏内科", "Cardiology", " CARDIOLOGY ", "Department of Cardiology",
                     "Cardiology Dept.", "ｃａｒｄｉｏｌｏｇｙ", "心内科室"):
            assert departments.resolve(conn, name) == cardiology, name
        assert departments.resolve(conn, "心脏外科") != cardiology  # cardiac surgery is another department
        assert departments.resolve(conn, "Astrology") is None
        assert departments.resolve(conn, "") is None
        lookup = departments.resolver(conn)
        assert lookup("心脏内科") == cardiology and lookup("nope") is None


def test_seeding_again_adds_nothing_and_keeps_what_coordinators_added(engine: sa.Engine) -> None:
    with engine.begin() as conn:
        cardiology = departments.resolve(conn, "Cardiology")
        assert cardiology is not None
        departments.add_synonym(conn, cardiology, "Heart Clinic")
        assert departments.seed_taxonomy(conn) == 0
        assert departments.resolve(conn, "heart clinic") == cardiology


def test_one_name_cannot_mean_two_departments(engine: sa.Engine) -> None:
    with engine.begin() as conn:
        neurology = departments.resolve(conn, "Neurology")
        assert neurology is not None
        with pytest.raises(DepartmentError, match="'心内科' already means Cardiology"):
            departments.add_synonym(conn, neurology, "心内科")
        with pytest.raises(DepartmentError, match="own name or code"):
            departments.remove_synonym(conn, neurology, "神经内科")


def test_a_new_department_with_its_names_and_synonyms(engine: sa.Engine) -> None:
    with engine.begin() as conn:
        new = departments.create_department(conn, "sports_medicine", "Sports Medicine", "运动医学科")
        departments.add_synonym(conn, new, "运动医学")
        assert departments.resolve(conn, "Sports Medicine") == departments.resolve(conn, "运动医学") == new
        with pytest.raises(DepartmentError, match="code"):
            departments.create_department(conn, "sports_medicine", "Sports Medicine again")
        with pytest.raises(DepartmentError, match="already means Cardiology"):
            departments.create_department(conn, "heart", "Cardiology")
        departments.remove_synonym(conn, new, "运动医学")
        assert departments.resolve(conn, "运动医学") is None
        listed = departments.get_department(conn, new)
        assert listed is not None
        assert {s["display"] for s in listed["synonyms"]} == {"Sports Medicine", "运动医学科"}


def test_heads_are_department_head_users(engine: sa.Engine) -> None:
    with engine.begin() as conn:
        head = accounts.create_user(conn, "head-1", "department_head")
        coordinator = accounts.create_user(conn, "coord-1", "coordinator")
        cardiology = departments.resolve(conn, "Cardiology")
        assert cardiology is not None
        departments.set_heads(conn, cardiology, [head])
        assert [h["username"] for h in departments.list_departments(conn, [cardiology])[0]["heads"]] == ["head-1"]
        assert accounts.identity(conn, accounts.user_by_id(conn, head) or {}).department_ids == {cardiology}
        with pytest.raises(DepartmentError, match="not department_head"):
            departments.set_heads(conn, cardiology, [coordinator])


def test_the_seed_holds_every_synonym_once(engine: sa.Engine) -> None:
    with engine.connect() as conn:
        keys = conn.execute(sa.select(department_synonyms.c.synonym)).scalars().all()
        assert len(keys) == len(set(keys)) > 200
        assert len(departments.list_departments(conn)) >= 40
