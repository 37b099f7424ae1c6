"""Shared patient records: who may see a patient, finding a patient by a clinic's record number, registering
patients (matched by national id, then by clinic and record number, never merged silently), visits, and the
search keys kept in step with every change.

Synchronous SQLAlchemy Core on the caller's connection (the caller owns the transaction and the audit entry).
The rules are pure in `hq.patient_matching`; merging is `hq.patient_merge`, the timeline `hq.patient_timeline`.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa

from hq import patient_matching as rules
from hq import patient_timeline
from hq.auth import Actor, Role
from hq.clock import now_ms as clock_now_ms
from hq.models import (
    clinics,
    consultations,
    dispatch_offers,
    patient_duplicates,
    patient_identifiers,
    patient_search_keys,
    patients,
    visits,
)
from hq.patient_matching import Demographics, PatientDataError

__all__ = [
    "PatientDataError",
    "Registration",
    "demographics_of",
    "find_patient",
    "identifiers_of",
    "may_see_patient",
    "note_duplicate",
    "patient_for_mrn",
    "provisional_patient",
    "record_visit",
    "register",
    "register_patient",
    "reindex",
    "resolve",
    "timeline",
]

MAX_MERGE_CHAIN = 32  # a merged record points at its survivor; chains are short, a loop would be a bug


class RecordsError(Exception):
    """A records operation cannot be done as asked; the message says why (for the user)."""


# ---- who may see a patient ------------------------------------------------------------------------
def may_see_patient(conn: sa.Connection, actor: Actor, patient_id: int) -> bool:
    """Admins, coordinators and department heads: every patient. Clinic staff: patients with a record number
    or a visit at their clinic. Experts: patients of a consultation they took or are offered right now.
    A merged-away record is judged by the record it was merged into."""
    if actor.sees_all_clinics:
        return True
    pid = resolve(conn, patient_id)
    if pid is None:
        return False
    if actor.role is Role.CLINIC_STAFF and actor.clinic_id is not None:
        at_clinic = sa.union_all(
            sa.select(sa.literal(1)).where(patient_identifiers.c.patient_id == pid,
                                           patient_identifiers.c.clinic_id == actor.clinic_id),
            sa.select(sa.literal(1)).where(visits.c.patient_id == pid, visits.c.clinic_id == actor.clinic_id),
        )
        return conn.execute(sa.select(sa.exists(at_clinic.subquery()))).scalar_one() is True
    if actor.role is Role.EXPERT and actor.expert_id is not None:
        c, d = consultations, dispatch_offers
        theirs = sa.select(c.c.id).where(c.c.patient_id == pid, c.c.expert_id == actor.expert_id)
        offered = (sa.select(c.c.id).join(d, d.c.consultation_id == c.c.id)
                   .where(c.c.patient_id == pid, d.c.expert_id == actor.expert_id, d.c.outcome == "pending"))
        return conn.execute(sa.select(sa.exists(theirs) | sa.exists(offered))).scalar_one() is True
    return False


def visible_clause(actor: Actor, patient_id_column: sa.ColumnElement[int]) -> sa.ColumnElement[bool] | None:
    """The same rule as a WHERE clause over a column of patient ids (None: no restriction), for lists."""
    if actor.sees_all_clinics:
        return None
    if actor.role is Role.CLINIC_STAFF and actor.clinic_id is not None:
        return sa.or_(
            sa.exists().where(patient_identifiers.c.patient_id == patient_id_column,
                              patient_identifiers.c.clinic_id == actor.clinic_id),
            sa.exists().where(visits.c.patient_id == patient_id_column, visits.c.clinic_id == actor.clinic_id))
    if actor.role is Role.EXPERT and actor.expert_id is not None:
        c, d = consultations, dispatch_offers
        return sa.or_(
            sa.exists().where(c.c.patient_id == patient_id_column, c.c.expert_id == actor.expert_id),
            sa.exists().where(c.c.patient_id == patient_id_column, d.c.consultation_id == c.c.id,
                              d.c.expert_id == actor.expert_id, d.c.outcome == "pending"))
    return sa.false()


# ---- reading --------------------------------------------------------------------------------------
def resolve(conn: sa.Connection, patient_id: int) -> int | None:
    """The live record a patient id stands for (following merges), or None if there is no such patient."""
    current = patient_id
    for _ in range(MAX_MERGE_CHAIN):
        row = conn.execute(sa.select(patients.c.merged_into_id).where(patients.c.id == current)).first()
        if row is None:
            return None
        if row.merged_into_id is None:
            return current
        current = int(row.merged_into_id)
    raise RecordsError(f"patient {patient_id}: merge chain longer than {MAX_MERGE_CHAIN} (a loop?)")


def find_patient(conn: sa.Connection, patient_id: int) -> dict[str, Any] | None:
    row = conn.execute(sa.select(patients).where(patients.c.id == patient_id)).mappings().first()
    return None if row is None else dict(row)


def identifiers_of(conn: sa.Connection, patient_id: int) -> list[dict[str, Any]]:
    """The patient's record numbers, oldest first: (clinic_id, mrn) pairs, which the devices' readings carry."""
    q = (sa.select(patient_identifiers.c.id, patient_identifiers.c.clinic_id, patient_identifiers.c.mrn,
                   patient_identifiers.c.created_ms, clinics.c.name.label("clinic_name"))
         .join(clinics, clinics.c.id == patient_identifiers.c.clinic_id)
         .where(patient_identifiers.c.patient_id == patient_id).order_by(patient_identifiers.c.id))
    return [dict(r) for r in conn.execute(q).mappings()]


def patient_for_mrn(conn: sa.Connection, clinic_id: str, mrn: str) -> int | None:
    """The patient a clinic knows by this record number (a device's patient id at that clinic), or None."""
    row = conn.execute(sa.select(patient_identifiers.c.patient_id).where(
        patient_identifiers.c.clinic_id == clinic_id, patient_identifiers.c.mrn == mrn)).first()
    return None if row is None else int(row.patient_id)


def demographics_of(row: Mapping[str, Any] | sa.RowMapping) -> Demographics:
    return Demographics(
        name=None if row["origin"] == "device" else row["name"], family_name=row["family_name"],
        given_name=row["given_name"], alt_name=row["alt_name"],
        sex=rules.Gender(row["sex"]) if row["sex"] else None, birth_date=row["birth_date"],
        national_id=row["national_id"], phone=row["phone"])


def _candidate(conn: sa.Connection, where: sa.ColumnElement[bool]) -> rules.Candidate | None:
    row = conn.execute(sa.select(patients).where(where, patients.c.merged_into_id.is_(None))).mappings().first()
    if row is None:
        return None
    return rules.Candidate(int(row["id"]), demographics_of(row), provisional=row["origin"] == "device")


# ---- search keys ------------------------------------------------------------------------------------
def record_key_source(row: Mapping[str, Any], mrns: Sequence[str],
                      former: Sequence[Mapping[str, Any]] = ()) -> rules.KeySource:
    """What a record is found by: its names (a device-made record has none), national id and record numbers,
    and the names of records merged into it (a misspelt duplicate, a maiden name)."""
    names = [] if row["origin"] == "device" else [row["name"]]
    names += [n for n in (row["family_name"], row["given_name"], row["alt_name"]) if n]
    if row["family_name"] and row["given_name"]:
        names.append(f"{row['family_name']} {row['given_name']}")
    names += [n for f in former if f["origin"] != "device" for n in (f["name"], f["alt_name"]) if n]
    return rules.KeySource(names=tuple(names), national_id=row["national_id"], mrns=tuple(mrns))


def key_source(conn: sa.Connection, patient_id: int) -> rules.KeySource:
    row = dict(conn.execute(sa.select(patients).where(patients.c.id == patient_id)).mappings().one())
    former = [dict(f) for f in conn.execute(sa.select(patients.c.name, patients.c.alt_name, patients.c.origin)
                                            .where(patients.c.merged_into_id == patient_id)).mappings()]
    mrns = conn.execute(sa.select(patient_identifiers.c.mrn)
                        .where(patient_identifiers.c.patient_id == patient_id)).scalars().all()
    return record_key_source(row, mrns, former)


CHAIN_SCOPE = ""  # search keys of the whole chain; a clinic's scope is its id


def search_scopes(conn: sa.Connection, patient_id: int) -> set[str]:
    """The chain, and every clinic where the patient has a record number or a visit (who may find them there)."""
    at = sa.union(sa.select(patient_identifiers.c.clinic_id).where(patient_identifiers.c.patient_id == patient_id),
                  sa.select(visits.c.clinic_id).where(visits.c.patient_id == patient_id))
    return {CHAIN_SCOPE, *conn.execute(at).scalars()}


def reindex(conn: sa.Connection, patient_id: int) -> None:
    """Rewrite the patient's search keys from the record (a merged-away record has none)."""
    conn.execute(patient_search_keys.delete().where(patient_search_keys.c.patient_id == patient_id))
    merged = conn.execute(sa.select(patients.c.merged_into_id).where(patients.c.id == patient_id)).scalar()
    if merged is not None:
        return
    rows = key_rows(patient_id, rules.search_keys(key_source(conn, patient_id)), search_scopes(conn, patient_id))
    if rows:
        conn.execute(patient_search_keys.insert(), rows)


def key_rows(patient_id: int, keys: Mapping[str, rules.KeyKind], scopes: set[str]) -> list[dict[str, Any]]:
    """The patient_search_keys rows of a patient: every key in every scope."""
    return [{"scope": scope, "key": k, "patient_id": patient_id, "kind": str(kind)}
            for scope in sorted(scopes) for k, kind in keys.items()]


# ---- registering ------------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Registration:
    patient_id: int
    outcome: str  # matched | created | matched_possible_duplicate | created_possible_duplicate
    duplicates: tuple[rules.Duplicate, ...] = ()
    mrn_attached: bool = False  # (clinic, mrn) is now this patient's (newly, by this registration)


def clean_demographics(*, name: str | None, family_name: str | None = None, given_name: str | None = None,
                       alt_name: str | None = None, sex: str | None = None, birth_date: str | dt.date | None = None,
                       national_id: str | None = None, phone: str | None = None, today: dt.date) -> Demographics:
    """Normalised demographics, or PatientDataError naming the field that is wrong."""
    def text(field: str, value: str | None, limit: int) -> str | None:
        if value is None or not value.strip():
            return None
        cleaned = " ".join(value.split())
        if len(cleaned) > limit:
            raise PatientDataError(field, f"is {len(cleaned)} characters long; at most {limit}")
        return cleaned

    family, given = text("family_name", family_name, 100), text("given_name", given_name, 100)
    return Demographics(
        name=rules.display_name(text("name", name, rules.NAME_MAX), family, given), family_name=family,
        given_name=given, alt_name=text("alt_name", alt_name, rules.NAME_MAX), sex=rules.parse_gender(sex),
        birth_date=rules.parse_birth_date(birth_date, today=today),
        national_id=None if national_id is None or not national_id.strip() else rules.normalise_national_id(
            national_id), phone=text("phone", phone, 40))


def register(conn: sa.Connection, clinic_id: str | None, mrn: str | None, demographics: Demographics, *,
             origin: str = "console", source: str = "register", now: int | None = None) -> Registration:
    """Find or create the patient a clinic registers (see `hq.patient_matching.decide`); record number and
    national id are attached when free, blank fields filled in, conflicts kept as duplicate candidates."""
    at = clock_now_ms() if now is None else now
    if (clinic_id is None) != (mrn is None):
        raise PatientDataError("mrn" if mrn is None else "clinic_id",
                               "a record number needs its clinic (clinic_id and mrn go together)")
    if mrn is not None:
        mrn = rules.clean_mrn(mrn)
    if mrn is None and demographics.national_id is None:
        raise PatientDataError("mrn", "give a clinic's record number (clinic_id and mrn) or a national id")
    if clinic_id is not None and conn.execute(sa.select(clinics.c.id).where(clinics.c.id == clinic_id)).first() \
            is None:
        raise PatientDataError("clinic_id", f"no clinic {clinic_id!r} (clinics appear when their gateway reports)")
    by_nid = None if demographics.national_id is None else _candidate(
        conn, patients.c.national_id == demographics.national_id)
    by_mrn_id = None if mrn is None or clinic_id is None else patient_for_mrn(conn, clinic_id, mrn)
    by_mrn = None if by_mrn_id is None else _candidate(conn, patients.c.id == by_mrn_id)
    passed_over = [c.patient_id for c in (by_nid, by_mrn) if c is not None]
    decision = rules.decide(demographics, by_nid, by_mrn, has_mrn=mrn is not None,
                            earlier_duplicates=_open_duplicates_of(conn, passed_over))
    if decision.action is rules.Action.USE:
        assert decision.patient_id is not None
        pid = decision.patient_id
        values: dict[str, Any] = dict(decision.fill)
        if decision.set_national_id:
            values["national_id"] = demographics.national_id
        if by_mrn is not None and by_mrn.provisional and by_mrn.patient_id == pid and demographics.name:
            values["origin"] = origin
        if values:
            conn.execute(patients.update().where(patients.c.id == pid).values(**values, updated_ms=at))
    else:
        pid = _insert_patient(conn, demographics, origin=origin,
                              national_id=demographics.national_id if decision.set_national_id else None, now=at)
    attached = False
    if decision.attach_mrn and clinic_id is not None and mrn is not None:
        conn.execute(patient_identifiers.insert().values(patient_id=pid, clinic_id=clinic_id, mrn=mrn, created_ms=at))
        attached = True
    for dup in decision.duplicates:
        note_duplicate(conn, pid, dup.other_id, dup.reason, source=source, now=at)
    reindex(conn, pid)
    return Registration(pid, decision.outcome, decision.duplicates, attached)


def register_patient(conn: sa.Connection, clinic_id: str | None, mrn: str | None, *, national_id: str | None = None,
                     name: str | None, sex: str | None = None, birth_date: str | dt.date | None = None,
                     family_name: str | None = None, given_name: str | None = None, alt_name: str | None = None,
                     phone: str | None = None, origin: str = "console", now: int | None = None) -> int:
    """The patient's id: an existing record (national id first, then (clinic, mrn)) or a new one. Raises
    PatientDataError for a field that is not acceptable. The caller audits."""
    at = clock_now_ms() if now is None else now
    demographics = clean_demographics(name=name, family_name=family_name, given_name=given_name, alt_name=alt_name,
                                      sex=sex, birth_date=birth_date, national_id=national_id, phone=phone,
                                      today=dt.datetime.fromtimestamp(at / 1000, dt.UTC).date())
    return register(conn, clinic_id, mrn, demographics, origin=origin, now=at).patient_id


def _insert_patient(conn: sa.Connection, d: Demographics, *, origin: str, national_id: str | None, now: int) -> int:
    assert d.name is not None
    result = conn.execute(patients.insert().values(
        national_id=national_id, family_name=d.family_name, given_name=d.given_name, name=d.name,
        alt_name=d.alt_name, sex=None if d.sex is None else str(d.sex), birth_date=d.birth_date, phone=d.phone,
        origin=origin, created_ms=now, updated_ms=now))
    return int(result.inserted_primary_key[0])  # type: ignore[index]


def provisional_name(clinic_id: str, mrn: str) -> str:
    return f"Unidentified patient (record {mrn} at {clinic_id})"


def provisional_patient(conn: sa.Connection, clinic_id: str, mrn: str, *, now: int | None = None) -> tuple[int, bool]:
    """The patient of a device's patient id at a clinic, making a record without demographics if HQ has none
    (origin "device"; a check-in fills it in). Returns (patient id, created). Safe against a concurrent
    registration of the same number: the identifier's unique key decides, the loser's empty record goes."""
    found = patient_for_mrn(conn, clinic_id, mrn)
    if found is not None:
        return found, False
    at = clock_now_ms() if now is None else now
    pid = _insert_patient(conn, Demographics(name=provisional_name(clinic_id, mrn)), origin="device",
                          national_id=None, now=at)
    try:
        with conn.begin_nested():
            conn.execute(patient_identifiers.insert().values(patient_id=pid, clinic_id=clinic_id, mrn=mrn,
                                                             created_ms=at))
    except sa.exc.IntegrityError:
        conn.execute(patients.delete().where(patients.c.id == pid))
        winner = patient_for_mrn(conn, clinic_id, mrn)
        if winner is None:
            raise
        return winner, False
    reindex(conn, pid)
    return pid, True


def _open_duplicates_of(conn: sa.Connection, patient_ids: list[int]) -> tuple[rules.Candidate, ...]:
    """Live records listed as possible duplicates of these (open candidates), as matching candidates."""
    if not patient_ids:
        return ()
    d = patient_duplicates
    others = sa.union(
        sa.select(d.c.other_id.label("pid")).where(d.c.patient_id.in_(patient_ids), d.c.resolved_ms.is_(None)),
        sa.select(d.c.patient_id.label("pid")).where(d.c.other_id.in_(patient_ids), d.c.resolved_ms.is_(None)),
    ).subquery()
    rows = conn.execute(sa.select(patients).where(patients.c.id.in_(sa.select(others.c.pid)),
                                                  patients.c.merged_into_id.is_(None))
                        .order_by(patients.c.id)).mappings().all()
    return tuple(rules.Candidate(int(r["id"]), demographics_of(r), provisional=r["origin"] == "device")
                 for r in rows if int(r["id"]) not in patient_ids)


def note_duplicate(conn: sa.Connection, a: int, b: int, reason: str, *, source: str, now: int) -> None:
    """Record (once) that two records may be one person, for the merge screen."""
    if a == b:
        return
    low, high = rules.pair(a, b)
    exists = conn.execute(sa.select(patient_duplicates.c.id).where(
        patient_duplicates.c.patient_id == low, patient_duplicates.c.other_id == high)).first()
    if exists is None:
        conn.execute(patient_duplicates.insert().values(patient_id=low, other_id=high, reason=reason[:2000],
                                                        source=source, created_ms=now))


def open_duplicates(conn: sa.Connection, limit: int = 100) -> list[dict[str, Any]]:
    d, a, b = patient_duplicates, patients.alias("a"), patients.alias("b")
    q = (sa.select(d.c.id, d.c.patient_id, d.c.other_id, d.c.reason, d.c.source, d.c.created_ms,
                   a.c.name.label("patient_name"), b.c.name.label("other_name"))
         .join(a, a.c.id == d.c.patient_id).join(b, b.c.id == d.c.other_id)
         .where(d.c.resolved_ms.is_(None), a.c.merged_into_id.is_(None), b.c.merged_into_id.is_(None))
         .order_by(d.c.id.desc()).limit(limit))
    return [dict(r) for r in conn.execute(q).mappings()]


def dismiss_duplicate(conn: sa.Connection, duplicate_id: int, user_id: int | None, *, now: int) -> bool:
    done = conn.execute(patient_duplicates.update().where(patient_duplicates.c.id == duplicate_id,
                                                          patient_duplicates.c.resolved_ms.is_(None))
                        .values(resolved_ms=now, resolution="dismissed", resolved_by_user_id=user_id))
    return done.rowcount == 1


# ---- visits -------------------------------------------------------------------------------------------
def record_visit(conn: sa.Connection, patient_id: int, clinic_id: str, *, started_ms: int,
                 reason: str | None = None, gateway_id: str | None = None, external_id: str | None = None,
                 now: int | None = None) -> tuple[int, bool]:
    """A visit (a check-in); with `external_id` (the gateway's check-in id) recorded once however often the
    check-in is replayed. Returns (visit id, created)."""
    if external_id is not None:
        found = conn.execute(sa.select(visits.c.id).where(visits.c.external_id == external_id)).first()
        if found is not None:
            return int(found.id), False
    known_here = conn.execute(sa.select(patient_search_keys.c.patient_id).where(
        patient_search_keys.c.patient_id == patient_id, patient_search_keys.c.scope == clinic_id).limit(1)).first()
    result = conn.execute(visits.insert().values(
        patient_id=patient_id, clinic_id=clinic_id, gateway_id=gateway_id, external_id=external_id,
        started_ms=started_ms, reason=reason, created_ms=clock_now_ms() if now is None else now))
    if known_here is None:
        reindex(conn, patient_id)  # the clinic's staff may find the patient now
    return int(result.inserted_primary_key[0]), True  # type: ignore[index]


def patients_of_keys(conn: sa.Connection, keys: Sequence[tuple[str, str]]) -> dict[tuple[str, str], int]:
    """(clinic_id, mrn) -> patient id for those that have one."""
    if not keys:
        return {}
    pi = patient_identifiers
    q = sa.select(pi.c.clinic_id, pi.c.mrn, pi.c.patient_id).where(
        sa.tuple_(pi.c.clinic_id, pi.c.mrn).in_([tuple(k) for k in keys]))
    return {(r.clinic_id, r.mrn): int(r.patient_id) for r in conn.execute(q)}


def timeline(conn: sa.Connection, patient_id: int, *, since_ms: int, until_ms: int) -> patient_timeline.Timeline:
    """The timeline of the patient (of the record it was merged into, for a merged-away id) over
    [since_ms, until_ms): visits, readings per day, alarms and gaps, imaging, consultations and reports,
    recordings. Call it inside `patient_timeline.snapshot(engine)`. Raises RecordsError for no such patient."""
    pid = resolve(conn, patient_id)
    if pid is None:
        raise RecordsError(f"no patient {patient_id}")
    keys = [patient_timeline.PatientKey(i["clinic_id"], i["mrn"]) for i in identifiers_of(conn, pid)]
    return patient_timeline.timeline(conn, pid, keys=keys, since_ms=since_ms, until_ms=until_ms)
