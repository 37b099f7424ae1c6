"""Capability figures by SQL aggregation over consultations and dispatch offers, on SQLite and PostgreSQL, equal
to the same figures computed by hand in Python (whole seconds; median: mean of the middle two; p90: nearest
rank)."""

from __future__ import annotations

import math
import random
import statistics

import sqlalchemy as sa

from hq import capability, experts
from hq.models import clinics, consultations, dispatch_offers, expert_capability

NOW = 1_767_225_600_000


def nearest_rank(values: list[float], percent: int) -> float:
    ordered = sorted(values)
    return ordered[math.ceil(percent * len(ordered) / 100) - 1]


def test_figures_match_a_hand_computation(engine: sa.Engine) -> None:
    rng = random.Random(5)
    with engine.begin() as conn:
        conn.execute(clinics.insert().values(id="c1", name="C1"))
        ids = [experts.create_expert(conn, {"name": f"E{i}", "department": "Cardiology"}, now_ms=NOW)
               for i in range(4)]
        idle = ids[3]  # no history at all
        expected: dict[int, dict[str, object]] = {}
        cid = 0
        for n, expert in zip((1, 2, 7), ids[:3], strict=True):  # odd, even and single counts for the median
            responses, ratings, adopted, done = [], [], [], 0
            for _ in range(n):
                cid += 1
                response_ms = rng.randrange(1_000, 600_000)
                rating = rng.choice([None, 1, 3, 4, 5])
                adoption = rng.choice([None, True, False])
                status = rng.choice(["closed", "reported", "in_session"])
                conn.execute(consultations.insert().values(
                    id=cid, public_id=f"p{cid}", kind="emergency", status=status, clinic_id="c1", expert_id=expert,
                    requested_ms=NOW - 10_000_000, received_ms=NOW - 10_000_000,
                    accepted_ms=NOW - 9_000_000 + response_ms, started_ms=NOW - 8_000_000 + cid, rating=rating,
                    advice_adopted=adoption))
                conn.execute(dispatch_offers.insert().values(consultation_id=cid, expert_id=expert, round=1,
                                                             offered_ms=NOW - 9_000_000, outcome="accepted"))
                other = ids[(ids.index(expert) + 1) % 3]
                conn.execute(dispatch_offers.insert().values(consultation_id=cid, expert_id=other, round=1,
                                                             offered_ms=NOW - 9_000_000, outcome="withdrawn"))
                responses.append((response_ms + 500) // 1000)  # whole seconds, half up
                ratings += [rating] if rating is not None else []
                adopted += [adoption] if adoption is not None else []
                done += status in ("closed", "reported")
            expected[expert] = dict(done=done, median=statistics.median(responses), p90=nearest_rank(responses, 90),
                                    ratings=len(ratings), rating_avg=statistics.mean(ratings) if ratings else None,
                                    answers=len(adopted), adopted=sum(adopted), last=NOW - 8_000_000 + cid,
                                    accepted=n)
        assert capability.refresh(conn, NOW) == 3
        assert capability.refresh(conn, NOW + 1) == 0  # nothing changed: nothing written
    with engine.connect() as conn:
        stored = {r["expert_id"]: dict(r) for r in conn.execute(sa.select(expert_capability)).mappings()}
        for expert, want in expected.items():
            got = stored[expert]
            assert got["consultations_done"] == want["done"]
            assert abs(got["median_response_s"] - want["median"]) < 1e-6  # type: ignore[operator]
            assert abs(got["p90_response_s"] - want["p90"]) < 1e-6  # type: ignore[operator]
            assert got["ratings"] == want["ratings"] and got["adoption_answers"] == want["answers"]
            assert got["adopted"] == want["adopted"] and got["last_consultation_ms"] == want["last"]
            assert got["offers_accepted"] == want["accepted"] and got["offers"] > got["offers_accepted"]
            if want["rating_avg"] is None:
                assert got["rating_avg"] is None
            else:
                assert abs(got["rating_avg"] - want["rating_avg"]) < 1e-9  # type: ignore[operator]
            assert capability.figures_of(conn, expert, NOW) == got  # live figures agree with the stored ones
        assert idle not in stored
        assert capability.figures_of(conn, idle, NOW)["consultations_done"] == 0
        assert capability.adoption_rate(capability.figures_of(conn, idle, NOW)) is None


def test_refresh_replaces_the_figures(engine: sa.Engine) -> None:
    with engine.begin() as conn:
        conn.execute(clinics.insert().values(id="c1", name="C1"))
        expert = experts.create_expert(conn, {"name": "E", "department": "Cardiology"}, now_ms=NOW)
        conn.execute(consultations.insert().values(id=1, public_id="p1", kind="urgent", status="closed",
                                                   clinic_id="c1", expert_id=expert, requested_ms=NOW,
                                                   received_ms=NOW, accepted_ms=NOW + 30_000))
        conn.execute(dispatch_offers.insert().values(consultation_id=1, expert_id=expert, round=1, offered_ms=NOW,
                                                     outcome="accepted"))
        capability.refresh(conn, NOW)
        conn.execute(consultations.insert().values(id=2, public_id="p2", kind="urgent", status="closed",
                                                   clinic_id="c1", expert_id=expert, requested_ms=NOW,
                                                   received_ms=NOW, accepted_ms=NOW + 90_000))
        conn.execute(dispatch_offers.insert().values(consultation_id=2, expert_id=expert, round=1, offered_ms=NOW,
                                                     outcome="accepted"))
        assert capability.refresh(conn, NOW + 1) == 1
        row = conn.execute(sa.select(expert_capability)).mappings().one()
        assert (row["consultations_done"], row["median_response_s"], row["p90_response_s"]) == (2, 60.0, 90.0)
        assert row["computed_ms"] == NOW + 1
