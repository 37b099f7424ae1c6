"""Searching the directory in a real database (SQLite and PostgreSQL): text, department by any synonym, tag,
language, the review filter (the SQL agrees with `hq.review` for every expert), department heads' scope."""

from __future__ import annotations

import random

import pytest
import sqlalchemy as sa

from hq import departments, directory, experts
from hq.models import expert_capability
from hq.models import experts as expert_rows
from hq.query_params import ParamError
from tests.support.directory import populate_experts

DAY = 86_400_000
NOW = 1_788_134_400_000  # 2026-08-31T00:00:00Z


def names(rows: list[dict[str, object]]) -> list[object]:
    return [r["name"] for r in rows]


def query(conn: sa.Connection, **params: str) -> directory.DirectoryQuery:
    return directory.parse_query(conn, params)


def test_search_and_filters(engine: sa.Engine) -> None:
    with engine.begin() as conn:
        experts.create_expert(conn, {"name": "Dr. Li Wei", "department": "心内科", "hospital": "Ruijin Hospital",
                                     "tags": "Arrhythmia; heart failure", "languages": "zh;en"}, now_ms=NOW)
        experts.create_expert(conn, {"name": "Dr. Wang Fang", "department": "Cardiology", "languages": "zh-CN",
                                     "tags": "hypertension"}, now_ms=NOW)
        experts.create_expert(conn, {"name": "Dr. Müller", "department": "Neurology", "languages": "de; en",
                                     "tags": "stroke"}, now_ms=NOW)
        experts.create_expert(conn, {"name": "Dr. Gone", "department": "Neurology", "active": False}, now_ms=NOW)
        neurology = departments.resolve(conn, "Neurology")
    with engine.connect() as conn:
        def find(scope: frozenset[int] | None = None, **params: str) -> list[object]:
            return names(directory.find(conn, query(conn, **params), scope=scope, now_ms=NOW)[0])

        assert find() == ["Dr. Li Wei", "Dr. Müller", "Dr. Wang Fang"]
        assert find(department="心脏内科") == ["Dr. Li Wei", "Dr. Wang Fang"]
        assert find(q="ruijin") == ["Dr. Li Wei"] and find(q="MÜLLER") == ["Dr. Müller"]
        assert find(q="心内科") == ["Dr. Li Wei", "Dr. Wang Fang"]  # a department's name finds its experts
        assert find(q="100%") == []  # LIKE wildcards are taken literally
        assert find(tag="Heart  Failure") == ["Dr. Li Wei"]
        assert find(language="zh") == ["Dr. Li Wei", "Dr. Wang Fang"] and find(language="英语") == ["Dr. Li Wei",
                                                                                                  "Dr. Müller"]
        assert find(include_inactive="1", department="neurology") == ["Dr. Gone", "Dr. Müller"]
        assert find(scope=frozenset({neurology})) == ["Dr. Müller"]
        assert find(scope=frozenset()) == []
        rows, total = directory.find(conn, query(conn, limit="1", offset="1"), scope=None, now_ms=NOW)
        assert names(rows) == ["Dr. Müller"] and total == 3
        for bad, parameter in (({"department": "Astrology"}, "department"), ({"review": "old"}, "review"),
                               ({"limit": "0"}, "limit"), ({"colour": "red"}, "colour"), ({"language": "x!"},
                                                                                           "language")):
            with pytest.raises(ParamError) as caught:
                directory.parse_query(conn, bad)
            assert caught.value.parameter == parameter


def test_the_review_filter_agrees_with_the_review_rules_for_every_expert(engine: sa.Engine) -> None:
    rng = random.Random(2)
    with engine.begin() as conn:
        d = populate_experts(conn, 300, now_ms=NOW)
        # Spread the clocks around the six-month edge, some confirmed by a coordinator, some never used.
        for expert_id in d.expert_ids:
            conn.execute(expert_rows.update().where(expert_rows.c.id == expert_id).values(
                profile_updated_ms=NOW - rng.randrange(0, 400) * DAY,
                created_ms=NOW - rng.randrange(0, 400) * DAY,
                reviewed_ms=rng.choice([None, NOW - rng.randrange(0, 400) * DAY])))
            conn.execute(expert_capability.update().where(expert_capability.c.expert_id == expert_id).values(
                last_consultation_ms=rng.choice([None, NOW - rng.randrange(0, 400) * DAY])))
        for expert_id in rng.sample(d.expert_ids, 30):
            for c in experts.credentials_of(conn, expert_id):
                experts.remove_credential(conn, expert_id, c["id"], now_ms=NOW)
    with engine.connect() as conn:
        everyone, _ = directory.find(conn, query(conn, include_inactive="1", limit="200"), scope=None, now_ms=NOW)
        everyone += directory.find(conn, query(conn, include_inactive="1", limit="200", offset="200"), scope=None,
                                   now_ms=NOW)[0]
        assert len(everyone) == 300
        for code in ("any", *directory.REVIEW_CODES):
            flagged = {r["id"] for r in everyone if any(code in ("any", f["code"]) for f in r["review"])}
            found: set[object] = set()
            for offset in (0, 200):
                rows, _ = directory.find(conn, query(conn, include_inactive="1", review=code, limit="200",
                                                     offset=str(offset)), scope=None, now_ms=NOW)
                found |= {r["id"] for r in rows}
            assert found == flagged, code
            assert flagged or code == "credential_expiring", f"the data exercises {code}"


def test_a_profile_has_live_figures_credentials_and_flags(engine: sa.Engine) -> None:
    with engine.begin() as conn:
        expert = experts.create_expert(conn, {"name": "Dr. Li", "department": "心内科"}, now_ms=NOW - 400 * DAY)
        experts.add_credential(conn, expert, {"kind": "license", "identifier": "L-1", "expires_on": "2026-09-15"},
                               now_ms=NOW - 400 * DAY)
    with engine.connect() as conn:
        found = directory.profile(conn, expert, NOW)
        assert found is not None
        assert [f["code"] for f in found["review"]] == ["not_updated", "not_used", "credential_expiring"]
        shown = directory.expert_json(found, full=True, now_ms=NOW)
        assert shown["credentials"][0] | {"updated": None} == {"id": shown["credentials"][0]["id"], "kind": "license",
                                                               "identifier": "L-1", "issuer": "",
                                                               "expires_on": "2026-09-15", "valid": True,
                                                               "updated": None}
        assert shown["department"]["name"] == "Cardiology" and shown["capability"]["consultations_done"] == 0
        public = directory.expert_json(found, full=False, now_ms=NOW)
        assert "credentials" not in public and "review" not in public and "external_ref" not in public
        assert directory.profile(conn, 999_999, NOW) is None
