"""`hq.experts.candidates` against a real database (SQLite and PostgreSQL): who may be matched for a request,
with availability and load from the callables the consultations engineer passes, then ranked."""

from __future__ import annotations

from datetime import date

import pytest
import sqlalchemy as sa

from hq import departments, experts
from hq.matching import MatchRequest, rank
from hq.models import expert_capability

NOW = 1_767_225_600_000  # 2026-01-01T00:00:00Z


def add(conn: sa.Connection, name: str, department: str = "心内科", **fields: object) -> int:
    return experts.create_expert(conn, {"name": name, "department": department, **fields}, now_ms=NOW)


def test_candidates_are_the_active_credentialed_experts_of_the_department_below_their_cap(engine: sa.Engine) -> None:
    with engine.begin() as conn:
        li = add(conn, "Dr. Li", tags="arrhythmia; heart failure", languages="zh;en", daily_cap=4)
        wang = add(conn, "Dr. Wang", department="Cardiology", tags="Heart Failure")
        zhao = add(conn, "Dr. Zhao", department="心脏内科")
        add(conn, "Dr. Off", active=False)
        expired = add(conn, "Dr. Expired")
        experts.add_credential(conn, expired, {"kind": "medical license", "expires_on": "2025-12-31"}, now_ms=NOW)
        today = add(conn, "Dr. Today")
        experts.add_credential(conn, today, {"kind": "medical license", "expires_on": "2026-01-01"}, now_ms=NOW)
        add(conn, "Dr. Zero", daily_cap=0)
        add(conn, "Dr. Neuro", department="神经内科")
        conn.execute(expert_capability.insert().values(
            expert_id=wang, consultations_done=3, offers=3, offers_accepted=3, median_response_s=20.0,
            p90_response_s=40.0, ratings=0, adoption_answers=0, adopted=0, computed_ms=NOW))
        cardiology = departments.resolve(conn, "cardiology")
    asked: list[list[int]] = []

    def available_now(ids: list[int]) -> set[int]:
        asked.append(sorted(ids))
        return {li, wang}

    def load_today(ids: list[int]) -> dict[int, int]:
        return {li: 1, zhao: 8, wang: 0}

    request = MatchRequest(cardiology, frozenset({"heart failure", "arrhythmia"}), language="zh")
    with engine.connect() as conn:
        found = experts.candidates(conn, request, now_ms=NOW, available_now=available_now, load_today=load_today)
    by_id = {c.expert_id: c for c in found}
    assert set(by_id) == {li, wang, zhao, today} - {zhao}  # zhao is at the default cap of 8
    assert asked == [sorted([li, wang, zhao, today])]  # asked once, for those the database let through
    assert by_id[li].tags == {"arrhythmia", "heart failure"} and by_id[li].languages == ("zh", "en")
    assert by_id[li].available_now and by_id[li].load_today == 1 and by_id[li].daily_cap == 4
    assert by_id[wang].median_response_s == 20.0 and by_id[wang].tags == {"heart failure"}
    assert by_id[today].credentials_expire_ms == NOW + 86_400_000 and by_id[li].credentials_expire_ms is None
    ranked = rank(request, found, now_ms=NOW)
    assert [r.expert_id for r in ranked] == [li, wang, today]
    # The day after, the credential that was valid through 2026-01-01 no longer is.
    with engine.connect() as conn:
        later = experts.candidates(conn, request, now_ms=NOW + 86_400_000, available_now=available_now,
                                   load_today=load_today)
    assert today not in {c.expert_id for c in later}


def test_any_department_and_exclusions(engine: sa.Engine) -> None:
    with engine.begin() as conn:
        a = add(conn, "A")
        b = add(conn, "B", department="Neurology")
        c = add(conn, "C", department="ENT")
    with engine.connect() as conn:
        found = experts.candidates(conn, MatchRequest(None, exclude=frozenset({c})), now_ms=NOW,
                                   available_now=lambda ids: set(), load_today=lambda ids: {})
        assert {x.expert_id for x in found} == {a, b}
        assert experts.candidates(conn, MatchRequest(None, exclude=frozenset({a, b, c})), now_ms=NOW,
                                  available_now=lambda ids: pytest.fail("not asked"),  # type: ignore[arg-type,return-value]
                                  load_today=lambda ids: {}) == []


def test_renewing_or_removing_an_expired_credential_makes_the_expert_a_candidate_again(engine: sa.Engine) -> None:
    with engine.begin() as conn:
        expert = add(conn, "Dr. Renew")
        old = experts.add_credential(conn, expert, {"kind": "license", "expires_on": "2025-06-30"}, now_ms=NOW)
        board = experts.add_credential(conn, expert, {"kind": "board", "expires_on": "2025-12-01"}, now_ms=NOW)
        experts.add_credential(conn, expert, {"kind": "membership"}, now_ms=NOW)  # no expiry
        cardiology = departments.resolve(conn, "Cardiology")

    def ids_now() -> set[int]:
        with engine.connect() as conn:
            return {c.expert_id for c in experts.candidates(conn, MatchRequest(cardiology), now_ms=NOW,
                                                            available_now=lambda i: set(), load_today=lambda i: {})}

    assert ids_now() == set()
    with engine.begin() as conn:
        changed = experts.update_credential(conn, expert, old, {"expires_on": "2027-06-30"}, now_ms=NOW)
        assert changed == {"expires_on": [date(2025, 6, 30), date(2027, 6, 30)]}
    assert ids_now() == set()  # the board certification is still expired
    with engine.begin() as conn:
        experts.remove_credential(conn, expert, board, now_ms=NOW)
        assert [c["kind"] for c in experts.credentials_of(conn, expert)] == ["license", "membership"]
    assert ids_now() == {expert}


def test_a_directory_change_by_another_worker_is_seen_by_the_next_match(engine: sa.Engine) -> None:
    """The directory is kept in memory per process; every change anyone commits (another HQ worker here: a
    second engine on the same database; the capability task; a tool's plain SQL) shows in the next match."""
    other = sa.create_engine(engine.url, poolclass=sa.pool.NullPool)
    with engine.begin() as conn:
        li = add(conn, "Dr. Li", tags="arrhythmia", daily_cap=4)
        wang = add(conn, "Dr. Wang")
        cardiology = departments.resolve(conn, "cardiology")
    request = MatchRequest(cardiology, frozenset({"arrhythmia", "heart failure"}))

    def match() -> dict[int, experts.Candidate]:
        with engine.connect() as conn:
            return {c.expert_id: c for c in experts.candidates(conn, request, now_ms=NOW,
                                                               available_now=lambda i: set(),
                                                               load_today=lambda i: {})}

    assert set(match()) == {li, wang}
    try:
        changes = [
            (lambda c: experts.update_expert(c, wang, {"tags": "heart failure; arrhythmia"}, now_ms=NOW),
             lambda found: found[wang].tags == {"arrhythmia", "heart failure"}),
            (lambda c: experts.update_expert(c, li, {"daily_cap": 2}, now_ms=NOW),
             lambda found: found[li].daily_cap == 2),
            (lambda c: c.execute(expert_capability.insert().values(
                expert_id=li, consultations_done=1, offers=1, offers_accepted=1, median_response_s=42.0,
                p90_response_s=42.0, ratings=0, adoption_answers=0, adopted=0, computed_ms=NOW)),
             lambda found: found[li].median_response_s == 42.0),
            (lambda c: c.execute(sa.text("UPDATE experts SET name = 'Dr. Li Wei' WHERE id = :id"), {"id": li}),
             lambda found: found[li].name == "Dr. Li Wei"),
            (lambda c: experts.update_expert(c, wang, {"active": False}, now_ms=NOW),
             lambda found: set(found) == {li}),
            (lambda c: experts.update_expert(c, li, {"department": "Neurology"}, now_ms=NOW),
             lambda found: found == {}),
        ]
        for change, seen in changes:
            with other.begin() as conn:
                change(conn)
            assert seen(match())
    finally:
        other.dispose()
