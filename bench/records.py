"""Patient records at scale, on SQLite and PostgreSQL: search over 100,000 patients (Chinese and Latin names,
national ids, record numbers at 20 clinics) and the timeline of a patient with a year of readings.

Search: a realistic mix of queries drawn from the population (a full Chinese name, a surname, pinyin words, a
Latin surname prefix, a national id, a record number prefix), each timed through `hq.patient_search.find` and
`describe` as the API runs them, as a coordinator and as clinic staff (scoped to their clinic).
Timeline: a year of readings (5 metrics, one a minute each: 2.6 million rows) summed by the rollup (its rate
is printed), then the 30-day and 365-day timeline timed; and once, for contrast, the same year summed from
the raw readings.

Prints: patient_search_p50_ms_<db>, patient_search_p99_ms_<db>, patient_search_p99_ms_<db>_<kind>,
patient_search_staff_p99_ms_<db>, observation_rollup_rows_per_s_<db>, timeline_{30,365}d_p{50,99}_ms_<db>,
timeline_raw_365d_ms_<db>.
Environment: RECORDS_BENCH_PATIENTS (100000), RECORDS_BENCH_QUERIES (2000), RECORDS_BENCH_YEAR_PER_HOUR (60
readings per metric and hour), RECORDS_BENCH_ONLY (sqlite|postgres).
"""

from __future__ import annotations

import os
import random
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from hq import db, observation_rollup, patient_matching, patient_search, records
from hq.auth import Actor, Role
from hq.models import clinics, gateways, observations, patient_identifiers, patient_search_keys, patients
from hq.observation_rollup import RollupStats
from hq.patient_timeline import DAY_MS, snapshot

PATIENTS = int(os.environ.get("RECORDS_BENCH_PATIENTS", "100000"))
QUERIES = int(os.environ.get("RECORDS_BENCH_QUERIES", "2000"))
YEAR_PER_HOUR = int(os.environ.get("RECORDS_BENCH_YEAR_PER_HOUR", "60"))
ONLY = os.environ.get("RECORDS_BENCH_ONLY", "")
CLINICS = 20
T0 = 1_733_011_200_000  # 2024-12-01T00:00:00Z: the year of readings starts here
NOW = T0 + 365 * DAY_MS

# Surnames roughly by frequency (the first few cover a third of China) with their pinyin.
SURNAMES = [("王", "Wang", 70), ("李", "Li", 70), ("张", "Zhang", 65), ("刘", "Liu", 50), ("陈", "Chen", 45),
            ("杨", "Yang", 30), ("黄", "Huang", 25), ("赵", "Zhao", 22), ("吴", "Wu", 20), ("周", "Zhou", 20),
            ("徐", "Xu", 15), ("孙", "Sun", 15), ("马", "Ma", 14), ("朱", "Zhu", 13), ("胡", "Hu", 12),
            ("郭", "Guo", 12), ("何", "He", 11), ("林", "Lin", 10), ("高", "Gao", 10), ("罗", "Luo", 10),
            ("郑", "Zheng", 9), ("梁", "Liang", 9), ("谢", "Xie", 8), ("宋", "Song", 7), ("唐", "Tang", 7),
            ("许", "Xu", 6), ("韩", "Han", 6), ("冯", "Feng", 6), ("邓", "Deng", 6), ("曹", "Cao", 5),
            ("彭", "Peng", 5), ("曾", "Zeng", 5), ("肖", "Xiao", 5), ("田", "Tian", 5), ("董", "Dong", 4),
            ("潘", "Pan", 4), ("袁", "Yuan", 4), ("蔡", "Cai", 4), ("蒋", "Jiang", 4), ("余", "Yu", 4),
            ("欧阳", "Ouyang", 1), ("司马", "Sima", 1), ("诸葛", "Zhuge", 1)]
GIVEN = [("伟", "Wei"), ("芳", "Fang"), ("娜", "Na"), ("敏", "Min"), ("静", "Jing"), ("丽", "Li"), ("强", "Qiang"),
         ("磊", "Lei"), ("军", "Jun"), ("洋", "Yang"), ("勇", "Yong"), ("艳", "Yan"), ("杰", "Jie"), ("娟", "Juan"),
         ("涛", "Tao"), ("明", "Ming"), ("超", "Chao"), ("秀", "Xiu"), ("霞", "Xia"), ("平", "Ping"), ("刚", "Gang"),
         ("桂", "Gui"), ("英", "Ying"), ("华", "Hua"), ("玉", "Yu"), ("兰", "Lan"), ("建", "Jian"), ("国", "Guo"),
         ("文", "Wen"), ("红", "Hong"), ("斌", "Bin"), ("鹏", "Peng"), ("辉", "Hui"), ("婷", "Ting"), ("雪", "Xue"),
         ("琳", "Lin"), ("晨", "Chen"), ("宇", "Yu"), ("浩", "Hao"), ("欣", "Xin")]
LATIN_GIVEN = ["Anna", "Maria", "John", "David", "Sarah", "Ahmed", "Fatima", "Carlos", "Elena", "Ivan", "Nguyen",
               "Priya", "Omar", "Lucia", "Peter", "Aisha", "Marco", "Yuki", "Hannah", "Samuel"]
LATIN_FAMILY = ["Smith", "Müller", "Garcia", "Rossi", "Kowalski", "Nguyen", "Khan", "Silva", "Petrov", "Tanaka",
                "Johnson", "Martin", "Lopez", "Schmidt", "Dubois", "Ivanova", "Ali", "Kim", "Singh", "Brown"]
REGIONS = ["110101", "110105", "310104", "440106", "510107", "330106", "420102", "320102", "610113", "370102"]
METRICS = [("MDC_PULS_OXIM_SAT_O2", "%", 96.0), ("MDC_PULS_OXIM_PULS_RATE", "/min", 75.0),
           ("MDC_RESP_RATE", "/min", 16.0), ("MDC_PRESS_BLD_NONINV_SYS", "mm[Hg]", 122.0),
           ("MDC_TEMP_BODY", "Cel", 36.8)]


def check_digit(body: str) -> str:
    """ISO 7064 MOD 11-2, as on a Chinese resident identity card."""
    weights = [7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2]
    return "10X98765432"[sum(int(c) * w for c, w in zip(body, weights, strict=True)) % 11]


def population(rng: random.Random, n: int) -> list[dict[str, Any]]:
    weights = [w for _, _, w in SURNAMES]
    people = []
    taken: set[str] = set()
    for i in range(1, n + 1):
        body = ""
        while not body or body in taken:  # national ids are unique
            born = f"{rng.randint(1935, 2020)}{rng.randint(1, 12):02d}{rng.randint(1, 28):02d}"
            body = f"{rng.choice(REGIONS)}{born}{rng.randrange(1000):03d}"
        taken.add(body)
        at = sorted({rng.randrange(1, CLINICS + 1) for _ in range(rng.choice((1, 1, 2)))})  # a third: two clinics
        person: dict[str, Any] = {"id": i, "national_id": body + check_digit(body), "birth": born,
                                  "mrns": [(c, f"C{c:02d}-{i:06d}") for c in at]}
        if rng.random() < 0.8:
            han, pinyin, _ = rng.choices(SURNAMES, weights)[0]
            given = rng.sample(GIVEN, rng.choice((1, 2, 2)))
            given_han = "".join(g for g, _ in given)
            person.update(family_name=han, given_name=given_han, name=han + given_han,
                          alt_name=f"{pinyin} {''.join(p for _, p in given)}", kind="han")
        else:
            given_l, family_l = rng.choice(LATIN_GIVEN), rng.choice(LATIN_FAMILY)
            person.update(family_name=family_l, given_name=given_l, name=f"{given_l} {family_l}", alt_name=None,
                          kind="latin")
        people.append(person)
    return people


def load(engine: sa.Engine, people: list[dict[str, Any]]) -> None:
    """Bulk rows as `hq.records` would write them (the keys from the same functions), in big transactions."""
    with engine.begin() as conn:
        conn.execute(clinics.insert(), [{"id": f"clinic-{c:02d}", "name": f"Clinic {c}"}
                                        for c in range(1, CLINICS + 1)])
    for start in range(0, len(people), 10_000):
        chunk = people[start:start + 10_000]
        rows, numbers, keys = [], [], []
        for p in chunk:
            row = {"id": p["id"], "national_id": p["national_id"], "family_name": p["family_name"],
                   "given_name": p["given_name"], "name": p["name"], "alt_name": p["alt_name"], "sex": None,
                   "birth_date": None, "phone": None, "origin": "console", "created_ms": T0, "updated_ms": T0}
            rows.append(row)
            mrns = [m for _, m in p["mrns"]]
            numbers += [{"patient_id": p["id"], "clinic_id": f"clinic-{c:02d}", "mrn": m, "created_ms": T0}
                        for c, m in p["mrns"]]
            source = records.record_key_source(row, mrns)
            scopes = {records.CHAIN_SCOPE, *(f"clinic-{c:02d}" for c, _ in p["mrns"])}
            keys += records.key_rows(p["id"], patient_matching.search_keys(source), scopes)
        with engine.begin() as conn:
            conn.execute(patients.insert(), rows)
            conn.execute(patient_identifiers.insert(), numbers)
            conn.execute(patient_search_keys.insert(), keys)
    with engine.begin() as conn:
        if conn.dialect.name == "postgresql":
            conn.execute(sa.text("SELECT setval('patients_id_seq', (SELECT max(id) FROM patients))"))
        else:
            conn.execute(sa.text("ANALYZE"))
    if engine.dialect.name == "postgresql":
        # What autovacuum does after a bulk load: statistics, and the visibility map for index-only scans.
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.execute(sa.text("VACUUM ANALYZE"))


def queries(rng: random.Random, people: list[dict[str, Any]], n: int) -> list[tuple[str, str]]:
    makers: list[tuple[str, Callable[[dict[str, Any]], str | None]]] = [
        ("chinese_name", lambda p: p["name"] if p["kind"] == "han" else None),
        ("surname", lambda p: p["family_name"] if p["kind"] == "han" else None),
        ("pinyin_words", lambda p: p["alt_name"].lower() if p["alt_name"] else None),
        ("latin_prefix", lambda p: p["family_name"][:4] if p["kind"] == "latin" else None),
        ("national_id", lambda p: p["national_id"]),
        ("mrn_prefix", lambda p: p["mrns"][0][1][:8]),
    ]
    out: list[tuple[str, str]] = []
    while len(out) < n:
        kind, make = makers[len(out) % len(makers)]
        text = make(rng.choice(people))
        if text:
            out.append((kind, text))
    return out


def p99(samples: list[float]) -> float:
    return statistics.quantiles(samples, n=100, method="inclusive")[98]


def time_ms(fn: Callable[[], object]) -> float:
    started = time.perf_counter()
    fn()
    return (time.perf_counter() - started) * 1000


def bench_search(engine: sa.Engine, people: list[dict[str, Any]], name: str) -> None:
    rng = random.Random(7)
    mix = queries(rng, people, QUERIES)
    coordinator = Actor(1, "coord", "Coordinator", Role.COORDINATOR)
    staff = Actor(2, "nurse", "Nurse", Role.CLINIC_STAFF, clinic_id="clinic-03")
    by_kind: dict[str, list[float]] = {}
    hits = 0
    with engine.connect() as conn:
        for _kind, text in mix[:200]:  # warm the caches
            patient_search.find(conn, text, actor=coordinator)
        for kind, text in mix:
            found: list[Any] = []

            def one(text: str = text, found: list[Any] = found) -> None:
                found.extend(patient_search.describe(conn, patient_search.find(conn, text, actor=coordinator)))

            by_kind.setdefault(kind, []).append(time_ms(one))
            hits += bool(found)
        staff_samples = [time_ms(lambda text=text: patient_search.describe(
            conn, patient_search.find(conn, text, actor=staff))) for _, text in mix]
    every = [s for samples in by_kind.values() for s in samples]
    print(f"patient_search_p50_ms_{name}: {statistics.median(every):.2f} ms")
    print(f"patient_search_p99_ms_{name}: {p99(every):.2f} ms")
    for kind, samples in by_kind.items():
        print(f"patient_search_p99_ms_{name}_{kind}: {p99(samples):.2f} ms")
    print(f"patient_search_staff_p99_ms_{name}: {p99(staff_samples):.2f} ms")
    print(f"patient_search_queries_with_hits_{name}: {hits / len(mix) * 100:.0f} %")


def year_of_readings(engine: sa.Engine, clinic_id: str, mrn: str) -> int:
    """A year of readings of one patient at 1/minute per metric, on one gateway; returns the row count."""
    per_hour = YEAR_PER_HOUR
    step = 3_600_000 // per_hour
    total = 365 * 24 * per_hour * len(METRICS)
    rng = random.Random(3)

    def rows() -> Iterator[tuple[Any, ...]]:
        seq = 0
        for i in range(365 * 24 * per_hour):
            t = T0 + i * step
            for metric, unit, typical in METRICS:
                seq += 1
                yield ("gw-year", seq, clinic_id, "observation", metric, round(typical + rng.uniform(-3, 3), 1),
                       unit, t, t, t, mrn, "monitor-1", None)

    with engine.begin() as conn:
        conn.execute(gateways.insert().values(id="gw-year", clinic_id=clinic_id, state="online", first_seen_ms=T0,
                                              committed_seq=total, complete_below=total + 1))
    raw = engine.raw_connection()
    try:
        cur = raw.cursor()
        columns = ", ".join(c.name for c in observations.columns)
        if engine.dialect.name == "postgresql":
            with cur.copy(f"COPY observations ({columns}) FROM STDIN") as copy:  # type: ignore[attr-defined]
                for row in rows():
                    copy.write_row(row)
        else:
            batch: list[tuple[Any, ...]] = []
            sql = f"INSERT INTO observations ({columns}) VALUES ({', '.join('?' * len(observations.columns))})"
            for row in rows():
                batch.append(row)
                if len(batch) == 50_000:
                    cur.executemany(sql, batch)
                    batch.clear()
            cur.executemany(sql, batch)
        raw.commit()
    finally:
        raw.close()
    return total


def bench_timeline(engine: sa.Engine, name: str) -> None:
    with engine.begin() as conn:
        pid = records.register_patient(conn, "clinic-01", "YEAR-1", name="一年 患者", now=T0)
    total = year_of_readings(engine, "clinic-01", "YEAR-1")
    started = time.perf_counter()
    observation_rollup.roll_all(engine, chunk_rows=20_000, stats=RollupStats(), max_chunks=10**6)
    rolled_s = time.perf_counter() - started
    print(f"observation_rollup_rows_per_s_{name}: {total / rolled_s:,.0f} rows/s ({total:,} readings)")
    for days in (30, 365):
        samples = []
        for _ in range(50):
            with snapshot(engine) as conn:
                samples.append(time_ms(lambda conn=conn, days=days: records.timeline(
                    conn, pid, since_ms=NOW - days * DAY_MS, until_ms=NOW).to_json()))
        print(f"timeline_{days}d_p50_ms_{name}: {statistics.median(samples):.2f} ms")
        print(f"timeline_{days}d_p99_ms_{name}: {p99(samples):.2f} ms")
    o = observations
    raw = (sa.select(o.c.metric, sa.func.count(), sa.func.min(o.c.value), sa.func.max(o.c.value),
                     sa.func.avg(o.c.value))
           .where(o.c.patient_id == "YEAR-1", o.c.clinic_id == "clinic-01", o.c.time_ms >= T0)
           .group_by(o.c.metric, o.c.time_ms // DAY_MS))
    with engine.connect() as conn:
        print(f"timeline_raw_365d_ms_{name}: {time_ms(lambda: conn.execute(raw).all()):.0f} ms "
              "(the same year summed from the raw readings, for contrast)")


@contextmanager
def database(name: str) -> Iterator[sa.Engine]:
    if name == "sqlite":
        with tempfile.TemporaryDirectory(prefix="bench-records-") as tmp:
            engine = db.create_engine_for(f"sqlite:///{Path(tmp) / 'hq.db'}")
            try:
                db.upgrade_schema(engine)
                yield engine
            finally:
                engine.dispose()
        return
    from tests.support.postgres import Postgres

    with Postgres() as pg:
        engine = db.create_engine_for(pg.url)
        try:
            db.upgrade_schema(engine)
            yield engine
        finally:
            engine.dispose()


def main() -> int:
    rng = random.Random(1)
    people = population(rng, PATIENTS)
    print(f"# {len(people):,} patients, {sum(len(p['mrns']) for p in people):,} record numbers at {CLINICS} clinics")
    for name in ("sqlite", "postgres"):
        if ONLY and name != ONLY:
            continue
        with database(name) as engine:
            started = time.perf_counter()
            load(engine, people)
            print(f"# {name}: loaded in {time.perf_counter() - started:.0f} s", flush=True)
            bench_search(engine, people, name)
            bench_timeline(engine, name)
    return 0


if __name__ == "__main__":
    sys.exit(main())
