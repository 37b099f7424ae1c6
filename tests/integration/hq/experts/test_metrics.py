"""Metrics by SQL aggregation on SQLite and PostgreSQL equal the same figures computed by hand in Python, for
every grouping, local hours across a daylight-saving change, the heat map, and each role's scope."""

from __future__ import annotations

import math
import random
import statistics
import zoneinfo
from collections import defaultdict
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa

from hq import experts, metrics
from hq.models import clinics, consultations
from hq.models import experts as expert_rows

ZONE = "Europe/Berlin"
SINCE = int(datetime(2026, 3, 20, tzinfo=UTC).timestamp() * 1000)
UNTIL = int(datetime(2026, 4, 10, tzinfo=UTC).timestamp() * 1000)  # across the switch to summer time on 29 March


def nearest_rank(values: list[float], percent: int) -> float:
    ordered = sorted(values)
    return ordered[math.ceil(percent * len(ordered) / 100) - 1]


def seed(conn: sa.Connection) -> tuple[list[dict[str, Any]], list[int], list[int]]:
    rng = random.Random(9)
    conn.execute(clinics.insert(), [{"id": "c1", "name": "North"}, {"id": "c2", "name": "South"}])
    ids = [experts.create_expert(conn, {"name": f"E{i}", "department": d}, now_ms=SINCE)
           for i, d in enumerate(("Cardiology", "Cardiology", "Neurology"))]
    department_of = {}
    for expert_id, department_id in conn.execute(sa.select(expert_rows.c.id, expert_rows.c.department_id)):
        department_of[expert_id] = department_id
    rows = []
    for i in range(400):
        requested = rng.randrange(SINCE - 86_400_000, UNTIL + 86_400_000)  # some outside the window
        kind = rng.choice(["routine", "urgent", "emergency"])
        expert = rng.choice([*ids, None])
        received = requested + rng.randrange(0, 5000)
        accepted = received + rng.randrange(1000, 900_000) if expert is not None else None
        started = (accepted or received) + 60_000 if expert is not None and rng.random() < 0.8 else None
        ended = started + rng.randrange(60_000, 3_600_000) if started is not None and rng.random() < 0.9 else None
        rows.append({"id": i + 1, "public_id": f"m{i}", "kind": kind, "clinic_id": rng.choice(["c1", "c2"]),
                     "status": rng.choice(["closed", "reported", "cancelled", "in_session"]),
                     "expert_id": expert, "department_id": department_of[expert] if expert else None,
                     "requested_ms": requested, "received_ms": received, "accepted_ms": accepted,
                     "started_ms": started, "ended_ms": ended, "rating": rng.choice([None, 2, 4, 5]),
                     "advice_adopted": rng.choice([None, True, False])})
    conn.execute(consultations.insert(), rows)
    return rows, ids, sorted(set(department_of.values()))


def expected(rows: list[dict[str, Any]], by: str) -> dict[Any, dict[str, Any]]:
    zone = zoneinfo.ZoneInfo(ZONE)
    groups: dict[Any, list[dict[str, Any]]] = defaultdict(list)
    for r in rows:
        if not SINCE <= r["requested_ms"] < UNTIL:
            continue
        local = datetime.fromtimestamp(r["requested_ms"] / 1000, UTC).astimezone(zone)
        key = {"none": "all", "clinic": r["clinic_id"], "expert": r["expert_id"], "department": r["department_id"],
               "hour": local.hour, "weekday": local.weekday(), "kind": r["kind"]}[by]
        groups[key].append(r)
    out = {}
    for key, members in groups.items():
        responses = [(r["accepted_ms"] - r["received_ms"] + 500) // 1000 for r in members  # whole seconds
                     if r["kind"] != "routine" and r["accepted_ms"] is not None]
        durations = [(r["ended_ms"] - r["started_ms"] + 500) // 1000 for r in members if r["ended_ms"] is not None]
        exact_durations = [(r["ended_ms"] - r["started_ms"]) / 1000 for r in members if r["ended_ms"] is not None]
        ratings = [r["rating"] for r in members if r["rating"] is not None]
        answers = [r["advice_adopted"] for r in members if r["advice_adopted"] is not None]
        out[key] = {"volume": len(members), "done": sum(r["status"] in ("closed", "reported") for r in members),
                    "cancelled": sum(r["status"] == "cancelled" for r in members), "responses": len(responses),
                    "response_median_s": statistics.median(responses) if responses else None,
                    "response_p90_s": nearest_rank(responses, 90) if responses else None,
                    "duration_median_s": statistics.median(durations) if durations else None,
                    "duration_p90_s": nearest_rank(durations, 90) if durations else None,
                    "duration_mean_s": statistics.mean(exact_durations) if exact_durations else None,
                    "ratings": len(ratings), "rating_avg": statistics.mean(ratings) if ratings else None,
                    "adoption_answers": len(answers), "adopted": sum(answers)}
    return out


def close(a: Any, b: Any) -> bool:
    if a is None or b is None:
        return a is b
    return abs(float(a) - float(b)) < 1e-6


def test_every_grouping_matches_a_hand_computation(engine: sa.Engine) -> None:
    with engine.begin() as conn:
        rows, _ids, _departments = seed(conn)
    with engine.connect() as conn:
        for by in metrics.DIMENSIONS:
            query = metrics.MetricsQuery(SINCE, UNTIL, ZONE, by)
            report = metrics.compute(conn, query, metrics.Scope())
            want = expected(rows, by)
            got = {r.key: r.to_json() for r in report.rows}
            assert set(got) == set(want), by
            for key, figures in want.items():
                for name, value in figures.items():
                    assert close(got[key][name], value), (by, key, name, got[key][name], value)
            assert report.total.volume == sum(f["volume"] for f in want.values())
        grid = metrics.heatmap(conn, metrics.MetricsQuery(SINCE, UNTIL, ZONE), metrics.Scope())
        by_hour = expected(rows, "hour")
        assert [sum(grid[d][h] for d in range(7)) for h in range(24)] == [by_hour.get(h, {"volume": 0})["volume"]
                                                                           for h in range(24)]
        by_day = expected(rows, "weekday")
        assert [sum(grid[d]) for d in range(7)] == [by_day.get(d, {"volume": 0})["volume"] for d in range(7)]
        labels = {r.key: r.label for r in metrics.compute(conn, metrics.MetricsQuery(SINCE, UNTIL, ZONE, "clinic"),
                                                          metrics.Scope()).rows}
        assert labels == {"c1": "North", "c2": "South"}


def test_scopes_count_only_what_the_role_may_see(engine: sa.Engine) -> None:
    with engine.begin() as conn:
        rows, ids, department_ids = seed(conn)
    in_window = [r for r in rows if SINCE <= r["requested_ms"] < UNTIL]
    with engine.connect() as conn:
        def volume(scope: metrics.Scope, **kw: Any) -> int:
            return metrics.compute(conn, metrics.MetricsQuery(SINCE, UNTIL, ZONE, **kw), scope).total.volume

        assert volume(metrics.Scope(clinic_id="c1")) == sum(r["clinic_id"] == "c1" for r in in_window)
        assert volume(metrics.Scope(expert_id=ids[0])) == sum(r["expert_id"] == ids[0] for r in in_window)
        assert volume(metrics.Scope(department_ids=frozenset({department_ids[0]}))) == sum(
            r["department_id"] == department_ids[0] for r in in_window)
        # A filter within a scope narrows it; it never widens it.
        assert volume(metrics.Scope(clinic_id="c1"), clinic_id="c2") == 0
        assert volume(metrics.Scope(), kind="emergency") == sum(r["kind"] == "emergency" for r in in_window)
        text = metrics.to_csv(metrics.compute(conn, metrics.MetricsQuery(SINCE, UNTIL, ZONE, "kind"),
                                              metrics.Scope()))
        lines = text.splitlines()
        assert lines[0].split(",")[:3] == ["key", "label", "volume"] and len(lines) == 1 + 3 + 1  # 3 kinds + total
        assert lines[1].endswith(f",kind,2026-03-20T00:00:00.000Z,2026-04-10T00:00:00.000Z,{ZONE},all")
