"""Matching ranks by availability, department and skill fit, language, load and past response time, excludes
who cannot take the case, and explains every point of every score."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from hq.matching import DEFAULT, Candidate, MatchRequest, Weights, explain, language_matches, rank, screen

NOW = 1_750_000_000_000
CARDIOLOGY, NEUROLOGY = 1, 2


def cand(expert_id: int, **kw: object) -> Candidate:
    base: dict[str, object] = {"department_id": CARDIOLOGY, "tags": frozenset(), "languages": ("zh",),
                               "available_now": True, "load_today": 0, "daily_cap": 8, "median_response_s": 60.0}
    return Candidate(expert_id, **{**base, **kw})  # type: ignore[arg-type]


def ids(ranked: list[object]) -> list[int]:
    return [r.expert_id for r in ranked]  # type: ignore[attr-defined]


def test_available_now_outranks_a_better_fit_who_is_not() -> None:
    request = MatchRequest(CARDIOLOGY, frozenset({"arrhythmia"}))
    ranked = rank(request, [cand(1, available_now=False, tags=frozenset({"arrhythmia"})), cand(2)], now_ms=NOW)
    assert ids(ranked) == [2, 1]


def test_skill_fit_then_load_then_response_time_order_equals() -> None:
    request = MatchRequest(CARDIOLOGY, frozenset({"Heart Failure", "arrhythmia"}))
    ranked = rank(request, [
        cand(1), cand(2, tags=frozenset({"heart failure"})), cand(3, tags=frozenset({"heart failure", "arrhythmia"})),
        cand(4, tags=frozenset({"heart failure"}), load_today=6), cand(5, tags=frozenset({"heart failure"}),
                                                                       median_response_s=600.0)], now_ms=NOW)
    assert ids(ranked) == [3, 2, 5, 4, 1]


def test_the_requested_department_and_language_count() -> None:
    request = MatchRequest(CARDIOLOGY, language="zh-CN")
    ranked = rank(request, [cand(1, department_id=NEUROLOGY), cand(2, languages=("en",)), cand(3)], now_ms=NOW)
    assert ids(ranked) == [3, 2, 1]  # department (3 points) outweighs language (2)


def test_experts_at_their_cap_inactive_expired_or_excluded_are_not_ranked() -> None:
    request = MatchRequest(CARDIOLOGY, exclude=frozenset({4}))
    pool = [cand(1, load_today=8), cand(2, active=False), cand(3, credentials_expire_ms=NOW), cand(4),
            cand(5, credentials_expire_ms=NOW + 1), cand(6, daily_cap=0)]
    eligible, excluded = screen(request, pool, now_ms=NOW)
    assert [c.expert_id for c in eligible] == [5]
    assert {x.expert_id: x.reason for x in excluded} == {
        1: "at the daily cap (8 of 8)", 2: "inactive", 3: "a credential has expired", 4: "excluded by the request",
        6: "at the daily cap (0 of 0)"}
    assert ids(rank(request, pool, now_ms=NOW)) == [5]


def test_ties_break_by_load_then_id_and_limit_keeps_the_best() -> None:
    pool = [cand(i, load_today=i % 2) for i in range(10, 0, -1)]
    ranked = rank(MatchRequest(CARDIOLOGY), pool, now_ms=NOW)
    assert ids(ranked) == [2, 4, 6, 8, 10, 1, 3, 5, 7, 9]
    assert ids(rank(MatchRequest(CARDIOLOGY), pool, now_ms=NOW, limit=3)) == [2, 4, 6]


def test_reasons_say_why_in_words() -> None:
    request = MatchRequest(CARDIOLOGY, frozenset({"arrhythmia", "heart failure"}), language="zh")
    best = rank(request, [cand(7, tags=frozenset({"arrhythmia"}), load_today=2, median_response_s=45.0)],
                now_ms=NOW)[0]
    texts = [r.text for r in best.reasons]
    assert texts == ["available now", "in the requested department", "matches 1 of 2 requested skills: arrhythmia",
                     "speaks zh", "2 of 8 consultations today", "median response 45 s"]
    assert "available now (+4.00)" in best.explanation
    newcomer = explain(MatchRequest(None), cand(8, median_response_s=None, available_now=False))
    assert [r.text for r in newcomer] == ["not available now", "0 of 8 consultations today",
                                          "no response history yet"]


def test_request_tags_are_normalised() -> None:
    request = MatchRequest(None, frozenset({"  HEART  failure ", ""}))
    assert request.tags == frozenset({"heart failure"})


def test_language_matching_uses_the_primary_subtag() -> None:
    assert language_matches("zh-CN", ("en", "zh"))
    assert language_matches("ZH", ("zh-Hant-TW",))
    assert not language_matches("en", ("zh", "yue"))


def test_weights_change_the_order() -> None:
    pool = [cand(1, available_now=False, tags=frozenset({"stroke"})), cand(2)]
    request = MatchRequest(CARDIOLOGY, frozenset({"stroke"}))
    assert ids(rank(request, pool, now_ms=NOW)) == [2, 1]
    assert ids(rank(request, pool, now_ms=NOW, weights=Weights(available=0.5))) == [1, 2]


names = st.sampled_from(["arrhythmia", "stroke", "heart failure", "asthma"])
candidates = st.builds(
    Candidate, expert_id=st.integers(1, 10_000), department_id=st.integers(1, 3),
    tags=st.frozensets(names), languages=st.lists(st.sampled_from(["zh", "en", "zh-CN", "yue"]), max_size=3).map(tuple),
    available_now=st.booleans(), load_today=st.integers(0, 10), daily_cap=st.integers(0, 10),
    median_response_s=st.none() | st.floats(0, 10_000), active=st.booleans(),
    credentials_expire_ms=st.none() | st.integers(NOW - 10, NOW + 10))
requests = st.builds(MatchRequest, department_id=st.none() | st.integers(1, 3), tags=st.frozensets(names),
                     language=st.none() | st.sampled_from(["zh", "en"]), exclude=st.frozensets(st.integers(1, 50)))


@given(requests, st.lists(candidates, max_size=30, unique_by=lambda c: c.expert_id))
def test_scores_are_the_sum_of_their_reasons_and_sorted(request: MatchRequest, pool: list[Candidate]) -> None:
    ranked = rank(request, pool, now_ms=NOW)
    eligible, excluded = screen(request, pool, now_ms=NOW)
    assert {r.expert_id for r in ranked} == {c.expert_id for c in eligible}  # rank screens as screen() says
    assert len(eligible) + len(excluded) == len(pool)
    for r in ranked:
        assert abs(r.score - sum(reason.points for reason in r.reasons)) < 1e-9
        assert 0 <= r.score <= sum((DEFAULT.available, DEFAULT.department, DEFAULT.tags, DEFAULT.language,
                                    DEFAULT.load, DEFAULT.response))
    assert [r.score for r in ranked] == sorted((r.score for r in ranked), reverse=True)
    assert ids(rank(request, pool, now_ms=NOW, limit=5)) == ids(ranked)[:5]
