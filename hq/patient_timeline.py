"""A patient's timeline: visits, the readings summarised per (UTC) day and metric, alarms and gaps, imaging,
consultations with their reports, and recordings, newest first, over a window of days.

It reads summaries, never a year of raw readings: the daily rollups and the alarms and gaps that
`hq.observation_rollup` copied out, plus the few readings it has not summed yet (each gateway's tail above its
rollup watermark, bounded). Read it in one snapshot (`snapshot`): rollups and watermarks must agree.
"""

from __future__ import annotations

import contextlib
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import sqlalchemy as sa

from hq.clock import iso_from_ms
from hq.models import (
    consultations,
    departments,
    experts,
    gateways,
    imaging,
    observation_highlights,
    observation_rollups,
    observations,
    reports,
    rollup_progress,
    visits,
)
from hq.recordings import recordings_for
from hq.representations import gap_summary

DAY_MS = 86_400_000
ROLLED_KINDS = ("observation", "alarm", "gap")
HIGHLIGHT_KINDS = ("alarm", "gap")
TAIL_MAX_ROWS = 200_000  # a gateway's unsummarised readings scanned at most; more: counted as pending
ENTRIES_PER_TYPE = 500  # the most of each kind of entry one window lists


@dataclass(frozen=True, slots=True)
class PatientKey:
    """How readings name a patient: the clinic and the device's patient id (a record number there)."""

    clinic_id: str
    mrn: str


@dataclass(slots=True)
class MetricDay:
    metric: str
    kind: str
    unit: str | None
    count: int
    value_count: int
    value_min: float | None
    value_max: float | None
    value_sum: float | None
    first_ms: int
    last_ms: int

    def add(self, other: MetricDay) -> None:
        self.count += other.count
        self.value_count += other.value_count
        self.value_min = _least(self.value_min, other.value_min)
        self.value_max = _greatest(self.value_max, other.value_max)
        self.value_sum = None if self.value_sum is None and other.value_sum is None else \
            (self.value_sum or 0.0) + (other.value_sum or 0.0)
        self.first_ms = min(self.first_ms, other.first_ms)
        self.last_ms = max(self.last_ms, other.last_ms)
        self.unit = self.unit or other.unit

    def to_json(self) -> dict[str, Any]:
        mean = None if not self.value_count or self.value_sum is None else self.value_sum / self.value_count
        return {"metric": self.metric, "unit": self.unit, "count": self.count, "min": self.value_min,
                "max": self.value_max, "mean": None if mean is None else round(mean, 2)}


def _least(a: float | None, b: float | None) -> float | None:
    return b if a is None else a if b is None else min(a, b)


def _greatest(a: float | None, b: float | None) -> float | None:
    return b if a is None else a if b is None else max(a, b)


@dataclass(slots=True)
class Timeline:
    patient_id: int
    since_ms: int
    until_ms: int
    days: dict[int, dict[tuple[str, str], MetricDay]] = field(default_factory=dict)  # UTC day -> metric sums
    entries: list[dict[str, Any]] = field(default_factory=list)  # newest first
    pending_readings: int = 0  # readings HQ holds but neither summed nor scanned (a stalled rollup)
    recordings: str = "none"  # how many of the consultations' recordings are on the timeline (see _recordings)

    def to_json(self) -> dict[str, Any]:
        days = []
        for day in sorted(self.days, reverse=True):
            sums = sorted(self.days[day].values(), key=lambda m: (m.kind != "observation", m.metric))
            days.append({"day": (iso_from_ms(day * DAY_MS) or "")[:10],
                         "first": iso_from_ms(min(m.first_ms for m in sums)),
                         "last": iso_from_ms(max(m.last_ms for m in sums)),
                         "metrics": [m.to_json() for m in sums if m.kind == "observation"],
                         "alarms": sum(m.count for m in sums if m.kind == "alarm"),
                         "gaps": sum(m.count for m in sums if m.kind == "gap")})
        return {"patient_id": self.patient_id, "since": iso_from_ms(self.since_ms), "until": iso_from_ms(self.until_ms),
                "vitals_by_day": days, "entries": self.entries, "pending_readings": self.pending_readings,
                "recordings": self.recordings}


@contextlib.contextmanager
def snapshot(engine: sa.Engine) -> Iterator[sa.Connection]:
    """A read-only connection whose statements all see one snapshot (PostgreSQL: REPEATABLE READ; SQLite: a
    read transaction, which is one snapshot in WAL mode)."""
    with engine.connect() as conn:
        if conn.dialect.name == "postgresql":
            conn = conn.execution_options(isolation_level="REPEATABLE READ")
        with conn.begin():
            yield conn


def timeline(conn: sa.Connection, patient_id: int, *, keys: list[PatientKey], since_ms: int, until_ms: int) -> Timeline:
    """The timeline of `patient_id` (a live record) whose readings carry `keys`, for [since_ms, until_ms)."""
    t = Timeline(patient_id, since_ms, until_ms)
    for key in keys:
        _rollups(conn, t, key)
        _highlights(conn, t, key)
        _tail(conn, t, key)
    _visits(conn, t)
    _imaging(conn, t)
    _consultations(conn, t)
    _recordings(conn, t)
    t.entries.sort(key=lambda e: (e["at_ms"], e["type"]), reverse=True)
    return t


def _add_day(t: Timeline, day: int, m: MetricDay) -> None:
    per_day = t.days.setdefault(day, {})
    found = per_day.get((m.metric, m.kind))
    if found is None:
        per_day[(m.metric, m.kind)] = m
    else:
        found.add(m)


def _rollups(conn: sa.Connection, t: Timeline, key: PatientKey) -> None:
    r = observation_rollups
    first_day = t.since_ms - t.since_ms % DAY_MS
    q = (sa.select(r.c.day_ms, r.c.metric, r.c.kind, r.c.unit, r.c.count, r.c.value_count, r.c.value_min,
                   r.c.value_max, r.c.value_sum, r.c.first_ms, r.c.last_ms)
         .where(r.c.clinic_id == key.clinic_id, r.c.patient_key == key.mrn, r.c.day_ms >= first_day,
                r.c.day_ms < t.until_ms))
    for row in conn.execute(q):
        _add_day(t, int(row[0]) // DAY_MS, MetricDay(row[1], row[2], row[3], int(row[4]), int(row[5]), row[6],
                                                     row[7], row[8], int(row[9]), int(row[10])))


def _highlight_entry(row: Any) -> dict[str, Any]:
    extra = row.extra or {}
    entry: dict[str, Any] = {"type": str(row.kind), "at_ms": int(row.time_ms), "time": iso_from_ms(row.time_ms),
                             "metric": row.metric, "value": row.value, "unit": row.unit, "device_id": row.device_id,
                             "clinic_id": row.clinic_id, "gateway_id": row.gateway_id, "seq": int(row.seq)}
    if row.kind == "alarm" and isinstance(extra.get("alarm"), dict):
        entry["alarm"] = extra["alarm"]
    if row.kind == "gap":
        entry["gap"] = {**{k: extra.get(k) for k in ("count", "from_ms", "to_ms", "reason", "lane")},
                        "text": gap_summary(row._mapping, extra)["text"]}
    return entry


def _highlights(conn: sa.Connection, t: Timeline, key: PatientKey) -> None:
    h = observation_highlights
    q = (sa.select(h).where(h.c.clinic_id == key.clinic_id, h.c.patient_key == key.mrn,
                            h.c.time_ms >= t.since_ms, h.c.time_ms < t.until_ms)
         .order_by(h.c.time_ms.desc()).limit(ENTRIES_PER_TYPE))
    t.entries += [_highlight_entry(row) for row in conn.execute(q)]


def _tail(conn: sa.Connection, t: Timeline, key: PatientKey) -> None:
    """Readings above each gateway's rollup watermark: summed and listed here, bounded by TAIL_MAX_ROWS."""
    o, p = observations, rollup_progress
    gws = conn.execute(sa.select(gateways.c.id, gateways.c.committed_seq, p.c.rolled_below)
                       .select_from(gateways.outerjoin(p, p.c.gateway_id == gateways.c.id))
                       .where(gateways.c.clinic_id == key.clinic_id)).all()
    for gateway_id, committed_seq, rolled_below in gws:
        start = int(rolled_below or 0)
        if int(committed_seq or 0) < start:
            continue
        if int(committed_seq) - start > TAIL_MAX_ROWS:
            t.pending_readings += int(committed_seq) - start
            continue
        where = (o.c.gateway_id == gateway_id, o.c.seq >= start, o.c.patient_id == key.mrn,
                 o.c.clinic_id == key.clinic_id, o.c.time_ms >= t.since_ms, o.c.time_ms < t.until_ms)
        day = (o.c.time_ms // DAY_MS).label("day")
        sums = (sa.select(day, o.c.metric, o.c.kind, sa.func.max(o.c.unit), sa.func.count(), sa.func.count(o.c.value),
                          sa.func.min(o.c.value), sa.func.max(o.c.value), sa.func.sum(o.c.value),
                          sa.func.min(o.c.time_ms), sa.func.max(o.c.time_ms))
                .where(*where, o.c.kind.in_(ROLLED_KINDS)).group_by(day, o.c.metric, o.c.kind))
        for row in conn.execute(sums):
            _add_day(t, int(row[0]), MetricDay(row[1], row[2], row[3], int(row[4]), int(row[5]), row[6], row[7],
                                               row[8], int(row[9]), int(row[10])))
        notable = (sa.select(o.c.gateway_id, o.c.seq, o.c.clinic_id, o.c.kind, o.c.metric, o.c.value, o.c.unit,
                             o.c.time_ms, o.c.device_id, o.c.extra)
                   .where(*where, o.c.kind.in_(HIGHLIGHT_KINDS)).limit(ENTRIES_PER_TYPE))
        t.entries += [_highlight_entry(row) for row in conn.execute(notable)]


def _visits(conn: sa.Connection, t: Timeline) -> None:
    v = visits
    q = (sa.select(v).where(v.c.patient_id == t.patient_id, v.c.started_ms >= t.since_ms, v.c.started_ms < t.until_ms)
         .order_by(v.c.started_ms.desc()).limit(ENTRIES_PER_TYPE))
    for row in conn.execute(q).mappings():
        t.entries.append({"type": "visit", "at_ms": int(row["started_ms"]), "time": iso_from_ms(row["started_ms"]),
                          "visit_id": row["id"], "clinic_id": row["clinic_id"], "gateway_id": row["gateway_id"],
                          "reason": row["reason"], "ended": iso_from_ms(row["ended_ms"]),
                          "checkin_id": row["external_id"]})


def _imaging(conn: sa.Connection, t: Timeline) -> None:
    i = imaging
    q = (sa.select(i).where(i.c.patient_id == t.patient_id, i.c.uploaded_ms >= t.since_ms,
                            i.c.uploaded_ms < t.until_ms).order_by(i.c.uploaded_ms.desc()).limit(ENTRIES_PER_TYPE))
    for row in conn.execute(q).mappings():
        t.entries.append({"type": "imaging", "at_ms": int(row["uploaded_ms"]), "time": iso_from_ms(row["uploaded_ms"]),
                          **imaging_json(row)})


def imaging_json(row: Any) -> dict[str, Any]:
    return {"imaging_id": row["id"], "filename": row["filename"], "modality": row["modality"],
            "study_date": None if row["study_date"] is None else row["study_date"].isoformat(),
            "study_description": row["study_description"], "body_part": row["body_part"],
            "study_instance_uid": row["study_instance_uid"], "series_instance_uid": row["series_instance_uid"],
            "sop_instance_uid": row["sop_instance_uid"], "size_bytes": int(row["size_bytes"]),
            "sha256": row["sha256"], "clinic_id": row["clinic_id"], "tags": row["tags"] or {},
            "uploaded": iso_from_ms(row["uploaded_ms"]), "download": f"/api/v1/imaging/{row['id']}/file"}


def _consultations(conn: sa.Connection, t: Timeline) -> None:
    c = consultations
    q = (sa.select(c.c.id, c.c.public_id, c.c.kind, c.c.status, c.c.clinic_id, c.c.requested_ms, c.c.accepted_ms,
                   c.c.ended_ms, c.c.chief_complaint, c.c.preliminary_diagnosis, c.c.question,
                   departments.c.name.label("department"), experts.c.name.label("expert"))
         .select_from(c.outerjoin(departments, departments.c.id == c.c.department_id)
                      .outerjoin(experts, experts.c.id == c.c.expert_id))
         .where(c.c.patient_id == t.patient_id, c.c.requested_ms >= t.since_ms, c.c.requested_ms < t.until_ms)
         .order_by(c.c.requested_ms.desc()).limit(ENTRIES_PER_TYPE))
    rows = conn.execute(q).mappings().all()
    by_consultation: dict[int, list[dict[str, Any]]] = defaultdict(list)
    if rows:
        r = reports
        for rep in conn.execute(sa.select(r.c.id, r.c.consultation_id, r.c.version, r.c.created_ms, r.c.sha256)
                                .where(r.c.consultation_id.in_([row["id"] for row in rows]))
                                .order_by(r.c.consultation_id, r.c.version)):
            by_consultation[int(rep.consultation_id)].append(
                {"report_id": rep.id, "version": rep.version, "created": iso_from_ms(rep.created_ms),
                 "sha256": rep.sha256})
    for row in rows:
        t.entries.append({
            "type": "consultation", "at_ms": int(row["requested_ms"]), "time": iso_from_ms(row["requested_ms"]),
            "consultation_id": row["id"], "public_id": row["public_id"], "kind": row["kind"], "status": row["status"],
            "clinic_id": row["clinic_id"], "department": row["department"], "expert": row["expert"],
            "chief_complaint": row["chief_complaint"], "preliminary_diagnosis": row["preliminary_diagnosis"],
            "question": row["question"], "accepted": iso_from_ms(row["accepted_ms"]),
            "ended": iso_from_ms(row["ended_ms"]), "reports": by_consultation.get(int(row["id"]), []),
            "link": f"/consultations/{row['public_id']}"})


def _recordings(conn: sa.Connection, t: Timeline) -> None:
    """The timeline's consultations' recordings (`hq.recordings.recordings_for`), entries of their own."""
    found = 0
    for consultation in [e for e in t.entries if e["type"] == "consultation"]:
        for rec in recordings_for(conn, consultation["public_id"]):
            started = datetime.fromisoformat(rec["started"]) if rec["started"] else None
            at_ms = int(started.timestamp() * 1000) if started else int(consultation["at_ms"])
            t.entries.append({"type": "recording", "at_ms": at_ms, "time": rec["started"], **rec,
                              "link": f"/consultations/{consultation['public_id']}/call"})
            found += 1
    t.recordings = f"{found} on the timeline" if found else "none"
