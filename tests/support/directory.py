"""Directory rows for tests and benchmarks, written straight into HQ's tables. Single rows: a clinic, a
department, an expert, their availability rules (`add_*`, `every_day`). And a synthetic expert directory and
consultation history: thousands of experts over the seeded departments (large departments larger, as in real
hospitals) with tags, languages, credentials and capability figures, and a year of consultations with dispatch
offers whose demand follows the hour of day and the weekday (`populate_*`); deterministic for a seed.
"""

from __future__ import annotations

import math
import random
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date, timedelta
from zoneinfo import ZoneInfo

import sqlalchemy as sa

from hq import departments as departments_db
from hq.clock import now_ms as clock_now_ms
from hq.models import (
    availability_rules,
    clinics,
    consultations,
    departments,
    dispatch_offers,
    expert_capability,
    expert_credentials,
    expert_tags,
    experts,
)
from hq.taxonomy import SEED

TAGS = ("arrhythmia", "heart failure", "hypertension", "chest pain", "stroke", "epilepsy", "asthma", "copd",
        "pneumonia", "diabetes", "thyroid", "sepsis", "trauma", "fracture", "burns", "neonatal jaundice",
        "preeclampsia", "renal failure", "dialysis", "gi bleeding", "hepatitis", "tuberculosis", "covid 19",
        "anaemia", "leukaemia", "lymphoma", "melanoma", "glaucoma", "cataract", "otitis", "depression",
        "psychosis", "ultrasound reading", "ct reading", "ecg reading", "pain management", "palliative care")
HOSPITALS = ("Peking Union Medical College Hospital", "Ruijin Hospital", "West China Hospital",
             "Zhongshan Hospital", "Xiangya Hospital", "Huashan Hospital", "Tongji Hospital",
             "First Affiliated Hospital of Sun Yat-sen University")
# Consultation demand by hour of day (clinic time): quiet at night, peaks mid-morning and early evening.
HOURLY_DEMAND = (2, 1, 1, 1, 1, 2, 3, 6, 10, 12, 11, 9, 7, 8, 9, 9, 8, 7, 8, 9, 7, 5, 4, 3)
WEEKDAY_DEMAND = (10, 9, 9, 9, 10, 6, 5)  # Monday first


@dataclass(frozen=True, slots=True)
class Directory:
    expert_ids: list[int]
    department_of: dict[int, int]  # expert id -> department id
    largest_department: int


def populate_experts(conn: sa.Connection, count: int, *, now_ms: int, seed: int = 7) -> Directory:
    rng = random.Random(seed)
    codes = [d.code for d in SEED]
    ids = {code: departments_db.resolve(conn, code) for code in codes}
    weights = [1 / (rank + 1) ** 0.8 for rank in range(len(codes))]  # Zipf-like: cardiology is the largest
    first_id = int(conn.execute(sa.select(sa.func.coalesce(sa.func.max(experts.c.id), 0))).scalar_one()) + 1
    rows, tag_rows, credential_rows, capability_rows = [], [], [], []
    department_of: dict[int, int] = {}
    today = date.fromtimestamp(now_ms / 1000)
    for i in range(count):
        expert_id = first_id + i
        department = ids[rng.choices(codes, weights)[0]]
        assert department is not None
        department_of[expert_id] = department
        languages = rng.choice((["zh"], ["zh"], ["zh", "en"], ["zh", "en"], ["zh", "yue"], ["en"]))
        updated = now_ms - rng.randrange(0, 400) * 86_400_000
        rows.append({"id": expert_id, "external_ref": f"SYN-{expert_id:06d}", "name": f"Expert {expert_id}",
                     "title": rng.choice(("Chief Physician", "Associate Chief Physician", "Attending Physician")),
                     "hospital": rng.choice(HOSPITALS), "department_id": department,
                     "time_zone": rng.choice(("Asia/Shanghai", "Asia/Shanghai", "Asia/Urumqi")),
                     "languages": languages, "daily_cap": rng.choice((4, 6, 8, 8, 10, 12)),
                     "active": rng.random() > 0.03, "search_text": f"expert {expert_id}", "created_ms": updated,
                     "profile_updated_ms": updated})
        for tag in rng.sample(TAGS, rng.randint(1, 5)):
            tag_rows.append({"expert_id": expert_id, "tag": tag, "display": tag})
        expires = today + timedelta(days=rng.randint(-30, 1500))
        credential_rows.append({"expert_id": expert_id, "kind": "medical license", "identifier": f"L{expert_id}",
                                "issuer": "National Health Commission", "expires_on": expires,
                                "updated_ms": updated})
        rows[-1]["credentials_expire_on"] = expires
        done = rng.randint(0, 300)
        capability_rows.append({
            "expert_id": expert_id, "consultations_done": done, "offers": done * 2, "offers_accepted": done,
            "median_response_s": None if done == 0 else rng.lognormvariate(4, 0.7),
            "p90_response_s": None, "ratings": done // 2, "rating_avg": None if done < 2 else rng.uniform(3, 5),
            "adoption_answers": done // 3, "adopted": done // 4, "last_consultation_ms": None, "computed_ms": now_ms})
    for table, batch in ((experts, rows), (expert_tags, tag_rows), (expert_credentials, credential_rows),
                         (expert_capability, capability_rows)):
        for start in range(0, len(batch), 5000):
            conn.execute(table.insert(), batch[start:start + 5000])
    largest = max(set(department_of.values()), key=list(department_of.values()).count)
    return Directory(list(department_of), department_of, largest)


def ensure_clinics(conn: sa.Connection, count: int) -> list[str]:
    names = [f"clinic-{i:02d}" for i in range(1, count + 1)]
    have = set(conn.execute(sa.select(clinics.c.id)).scalars())
    new = [{"id": n, "name": n.replace("-", " ").title()} for n in names if n not in have]
    if new:
        conn.execute(clinics.insert(), new)
    return names


def populate_consultations(conn: sa.Connection, directory: Directory, *, end_ms: int, days: int, per_day: int,
                           clinic_count: int = 30, seed: int = 11, time_zone: str = "Asia/Shanghai") -> int:
    """`days` of history ending at `end_ms`, about `per_day` consultations a day; returns how many. Each
    urgent or emergency one has dispatch offers to three experts of its department, one of them accepted."""
    rng = random.Random(seed)
    zone = ZoneInfo(time_zone)
    clinic_ids = ensure_clinics(conn, clinic_count)
    by_department: dict[int, list[int]] = {}
    for expert_id, department in directory.department_of.items():
        by_department.setdefault(department, []).append(expert_id)
    departments_list = list(by_department)
    weights = [len(by_department[d]) for d in departments_list]
    first_id = int(conn.execute(sa.select(sa.func.coalesce(sa.func.max(consultations.c.id), 0))).scalar_one()) + 1
    rows, offers = [], []
    start_ms = end_ms - days * 86_400_000
    from datetime import datetime

    day0 = datetime.fromtimestamp(start_ms / 1000, zone).replace(hour=0, minute=0, second=0, microsecond=0)
    consultation_id = first_id
    for d in range(days):
        day = day0 + timedelta(days=d)
        for _ in range(max(0, round(rng.gauss(per_day * WEEKDAY_DEMAND[day.weekday()] / 9, math.sqrt(per_day))))):
            hour = rng.choices(range(24), HOURLY_DEMAND)[0]
            local = day.replace(hour=hour, minute=rng.randrange(60), second=rng.randrange(60))
            requested = int(local.timestamp() * 1000)
            if not start_ms <= requested < end_ms:
                continue
            department = rng.choices(departments_list, weights)[0]
            pool = by_department[department]
            expert = rng.choice(pool)
            kind = rng.choices(("routine", "urgent", "emergency"), (5, 3, 2))[0]
            status = rng.choices(("closed", "reported", "cancelled"), (80, 15, 5))[0]
            response_ms = int(rng.lognormvariate(4.2, 0.8) * 1000) if kind != "routine" else None
            accepted = requested + response_ms if response_ms is not None else None
            started = (accepted or requested) + rng.randrange(10_000, 300_000)
            ended = started + int(rng.lognormvariate(7, 0.5) * 1000) if status != "cancelled" else None
            rated = status != "cancelled" and rng.random() < 0.7
            answered = status != "cancelled" and rng.random() < 0.5
            rows.append({
                "id": consultation_id, "public_id": f"syn{consultation_id:012d}", "kind": kind, "status": status,
                "clinic_id": rng.choice(clinic_ids), "department_id": department, "expert_id": expert,
                "requested_ms": requested, "received_ms": requested + rng.randrange(50, 3000),
                "accepted_ms": accepted, "started_ms": started if status != "cancelled" else None, "ended_ms": ended,
                "rating": rng.choices((1, 2, 3, 4, 5), (2, 3, 10, 35, 50))[0] if rated else None,
                "rated_ms": (ended or started) + 3_600_000 if rated else None,
                "advice_adopted": (rng.random() < 0.8) if answered else None,
                "adoption_ms": (ended or started) + 86_400_000 if answered else None, "escalation_round": 0})
            if accepted is not None:
                others = rng.sample(pool, min(len(pool), 3))
                for other in {expert, *others}:
                    took = other == expert
                    offers.append({"consultation_id": consultation_id, "expert_id": other, "round": 1,
                                   "offered_ms": requested + 200,
                                   "responded_ms": accepted if took else requested + rng.randrange(5_000, 90_000),
                                   "outcome": "accepted" if took else rng.choice(("declined", "withdrawn"))})
            consultation_id += 1
    for table, batch in ((consultations, rows), (dispatch_offers, offers)):
        for start in range(0, len(batch), 5000):
            conn.execute(table.insert(), batch[start:start + 5000])
    return len(rows)


# ---- single rows ----------------------------------------------------------------------------
def add_clinic(conn: sa.Connection, clinic_id: str, name: str | None = None) -> str:
    if conn.execute(sa.select(clinics.c.id).where(clinics.c.id == clinic_id)).first() is None:
        conn.execute(clinics.insert().values(id=clinic_id, name=name or clinic_id))
    return clinic_id


def add_department(conn: sa.Connection, code: str, name: str | None = None) -> int:
    found = conn.execute(sa.select(departments.c.id).where(departments.c.code == code)).scalar()
    if found is not None:
        return int(found)
    result = conn.execute(departments.insert().values(code=code, name=name or code.title()))
    return int(result.inserted_primary_key[0])  # type: ignore[index]


def add_expert(conn: sa.Connection, name: str, department_id: int, *, time_zone: str = "UTC",
               user_id: int | None = None, daily_cap: int = 8, languages: Iterable[str] = ("en",),
               active: bool = True) -> int:
    now = clock_now_ms()
    result = conn.execute(experts.insert().values(
        name=name, department_id=department_id, time_zone=time_zone, user_id=user_id, daily_cap=daily_cap,
        languages=list(languages), active=active, created_ms=now, profile_updated_ms=now))
    return int(result.inserted_primary_key[0])  # type: ignore[index]


def add_rule(conn: sa.Connection, expert_id: int, weekday: int, start: str, end: str, slot_minutes: int) -> None:
    conn.execute(availability_rules.insert().values(expert_id=expert_id, weekday=weekday, start_time=start,
                                                    end_time=end, slot_minutes=slot_minutes))


def every_day(conn: sa.Connection, expert_id: int, start: str, end: str, slot_minutes: int) -> None:
    for weekday in range(7):
        add_rule(conn, expert_id, weekday, start, end, slot_minutes)
