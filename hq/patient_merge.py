"""Merging a duplicate patient record B into A, and undoing it: B's record numbers (and with them its devices'
readings), visits, imaging, consultations and appointments move to A; B stays, pointing at A; exactly what
moved is kept in patient_merges so that the merge can be undone.

Synchronous SQLAlchemy Core in the caller's transaction; the caller checks who may merge and audits.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa

from hq import patient_matching as rules
from hq.models import (
    appointments,
    consultations,
    imaging,
    patient_duplicates,
    patient_identifiers,
    patient_merges,
    patients,
    visits,
)
from hq.records import RecordsError, reindex

# What moves with a merge, by table (each has a patient_id column). Others' tables (consultations, appointments)
# are moved as their schema says: the patient the row is about.
MOVED_TABLES: dict[str, sa.Table] = {"patient_identifiers": patient_identifiers, "visits": visits,
                                     "imaging": imaging, "consultations": consultations, "appointments": appointments}


class MergeError(RecordsError):
    """The merge (or its undoing) cannot be done; the message says why and what to do."""


@dataclass(frozen=True, slots=True)
class MergeResult:
    merge_id: int
    survivor_id: int
    merged_id: int
    moved: dict[str, Any]

    def counts(self) -> dict[str, int]:
        return {name: len(self.moved["rows"].get(name, [])) for name in MOVED_TABLES}


def _locked(conn: sa.Connection, patient_id: int) -> dict[str, Any]:
    row = conn.execute(sa.select(patients).where(patients.c.id == patient_id).with_for_update()).mappings().first()
    if row is None:
        raise MergeError(f"no patient {patient_id}")
    return dict(row)


def merge(conn: sa.Connection, survivor_id: int, merged_id: int, *, by_user_id: int | None, reason: str | None,
          now: int) -> MergeResult:
    """Merge record `merged_id` (B) into `survivor_id` (A)."""
    if survivor_id == merged_id:
        raise MergeError("a patient cannot be merged into itself")
    a, b = _locked(conn, survivor_id), _locked(conn, merged_id)
    for row, role in ((a, "survivor"), (b, "duplicate")):
        if row["merged_into_id"] is not None:
            raise MergeError(f"the {role} record {row['id']} was already merged into {row['merged_into_id']}")
    if a["national_id"] and b["national_id"] and a["national_id"] != b["national_id"]:
        raise MergeError(f"the records have different national ids ({a['national_id']}, {b['national_id']}): "
                         "two people, or one id is wrong; correct it before merging")
    rows: dict[str, list[int]] = {}
    for name, table in MOVED_TABLES.items():
        ids = [int(i) for i in conn.execute(sa.select(table.c.id).where(table.c.patient_id == merged_id)
                                            .order_by(table.c.id)).scalars()]
        if ids:
            conn.execute(table.update().where(table.c.id.in_(ids)).values(patient_id=survivor_id))
            rows[name] = ids
    filled: dict[str, Any] = {}
    values: dict[str, Any] = {}
    for field in rules.FILLABLE:
        if a[field] is None and b[field] is not None:
            values[field] = b[field]
            filled[field] = _json_value(b[field])
    if a["origin"] == "device" and b["origin"] != "device":
        values.update(name=b["name"], origin=b["origin"])
        filled.update(name=b["name"], origin=b["origin"], was_name=a["name"], was_origin=a["origin"])
    national_id_moved = bool(b["national_id"] and not a["national_id"])
    if national_id_moved:
        conn.execute(patients.update().where(patients.c.id == merged_id).values(national_id=None))
        values["national_id"] = b["national_id"]
    conn.execute(patients.update().where(patients.c.id == survivor_id).values(**values, updated_ms=now))
    conn.execute(patients.update().where(patients.c.id == merged_id).values(merged_into_id=survivor_id,
                                                                             updated_ms=now))
    _resolve_duplicates(conn, survivor_id, merged_id, by_user_id, now)
    moved = {"rows": rows, "filled": filled, "national_id": b["national_id"] if national_id_moved else None}
    merge_id = int(conn.execute(patient_merges.insert().values(
        survivor_id=survivor_id, merged_id=merged_id, by_user_id=by_user_id, reason=reason, at_ms=now,
        moved=moved)).inserted_primary_key[0])  # type: ignore[index]
    reindex(conn, survivor_id)
    reindex(conn, merged_id)
    return MergeResult(merge_id, survivor_id, merged_id, moved)


def _json_value(value: Any) -> Any:
    return value.isoformat() if hasattr(value, "isoformat") else value


def _resolve_duplicates(conn: sa.Connection, survivor_id: int, merged_id: int, user_id: int | None, now: int) -> None:
    """The pair is resolved; B's other open candidates become A's (once)."""
    d = patient_duplicates
    low, high = rules.pair(survivor_id, merged_id)
    conn.execute(d.update().where(d.c.patient_id == low, d.c.other_id == high, d.c.resolved_ms.is_(None))
                 .values(resolved_ms=now, resolution="merged", resolved_by_user_id=user_id))
    others = conn.execute(sa.select(d.c.id, d.c.patient_id, d.c.other_id).where(
        sa.or_(d.c.patient_id == merged_id, d.c.other_id == merged_id), d.c.resolved_ms.is_(None))).all()
    for dup_id, p, o in others:
        other = o if p == merged_id else p
        new_low, new_high = rules.pair(survivor_id, other)
        taken = conn.execute(sa.select(d.c.id).where(d.c.patient_id == new_low, d.c.other_id == new_high)).first()
        if taken is None:
            conn.execute(d.update().where(d.c.id == dup_id).values(patient_id=new_low, other_id=new_high))
        else:
            conn.execute(d.update().where(d.c.id == dup_id).values(resolved_ms=now, resolution="merged",
                                                                   resolved_by_user_id=user_id))


def undo(conn: sa.Connection, merge_id: int, *, by_user_id: int | None, now: int) -> MergeResult:
    """Undo a merge: what moved and still belongs to A goes back to B, B lives again. What was added to A
    after the merge stays with A."""
    m = conn.execute(sa.select(patient_merges).where(patient_merges.c.id == merge_id).with_for_update()) \
        .mappings().first()
    if m is None:
        raise MergeError(f"no merge {merge_id}")
    if m["undone_ms"] is not None:
        raise MergeError(f"merge {merge_id} was already undone")
    a_id, b_id = int(m["survivor_id"]), int(m["merged_id"])
    a, b = _locked(conn, a_id), _locked(conn, b_id)
    if b["merged_into_id"] != a_id:
        raise MergeError(f"patient {b_id} is no longer merged into {a_id}")
    if a["merged_into_id"] is not None:
        raise MergeError(f"patient {a_id} was merged into {a['merged_into_id']} since: undo that merge first")
    moved: dict[str, Any] = m["moved"]
    for name, ids in moved["rows"].items():
        table = MOVED_TABLES[name]
        conn.execute(table.update().where(table.c.id.in_(ids), table.c.patient_id == a_id).values(patient_id=b_id))
    restore: dict[str, Any] = {}
    filled = moved.get("filled", {})
    for field in rules.FILLABLE:
        if field in filled and _json_value(a[field]) == filled[field]:
            restore[field] = None
    if "was_name" in filled and a["name"] == filled["name"]:
        restore.update(name=filled["was_name"], origin=filled["was_origin"])
    nid = moved.get("national_id")
    if nid and a["national_id"] == nid:
        restore["national_id"] = None
    conn.execute(patients.update().where(patients.c.id == a_id).values(**restore, updated_ms=now))
    b_values: dict[str, Any] = {"merged_into_id": None, "updated_ms": now}
    if nid and "national_id" in restore:
        b_values["national_id"] = nid
    conn.execute(patients.update().where(patients.c.id == b_id).values(**b_values))
    conn.execute(patient_merges.update().where(patient_merges.c.id == merge_id)
                 .values(undone_ms=now, undone_by_user_id=by_user_id))
    low, high = rules.pair(a_id, b_id)
    d = patient_duplicates
    # Two records again: if they were a candidate pair, it is open again (candidates of B that the merge handed
    # to A stay A's).
    conn.execute(d.update().where(d.c.patient_id == low, d.c.other_id == high, d.c.resolution == "merged")
                 .values(resolved_ms=None, resolution=None, resolved_by_user_id=None))
    reindex(conn, a_id)
    reindex(conn, b_id)
    return MergeResult(merge_id, a_id, b_id, moved)


def merges_of(conn: sa.Connection, patient_id: int) -> list[dict[str, Any]]:
    """Merges into or of this record, newest first."""
    pm = patient_merges
    q = (sa.select(pm, patients.c.name.label("merged_name"))
         .join(patients, patients.c.id == pm.c.merged_id)
         .where(sa.or_(pm.c.survivor_id == patient_id, pm.c.merged_id == patient_id)).order_by(pm.c.id.desc()))
    return [dict(r) for r in conn.execute(q).mappings()]
