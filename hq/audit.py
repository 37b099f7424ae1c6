"""The audit log: every read of a patient record, every change, login and export, appended in the caller's
transaction to a hash chain (each entry's hash covers its fields and the previous entry's hash).

`verify` finds the first entry that was edited, removed or reordered. Pure hashing is in `entry_hash`;
this module does not decide what is audited: the handlers that read and change data call `record`.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

import sqlalchemy as sa

from hq.clock import now_ms
from hq.models import audit_head, audit_log

GENESIS_HASH = "0" * 64
VERIFY_CHUNK = 5000
EXPORT_COLUMNS = ("id", "at_ms", "actor", "action", "target_type", "target_id", "clinic_id", "detail", "hash")


class Labelled(Protocol):
    """Who acted: an `hq.auth.Actor`, or anything else with a user id and a label."""

    @property
    def user_id(self) -> int | None: ...

    @property
    def label(self) -> str: ...


def entry_hash(prev_hash: str, entry: Mapping[str, Any]) -> str:
    """sha256 over the previous hash and a canonical JSON of the entry's fields (not its own hash)."""
    fields = [entry["id"], entry["at_ms"], entry["actor_user_id"], entry["actor"], entry["action"],
              entry["target_type"], entry["target_id"], entry["clinic_id"], entry["detail"]]
    canonical = json.dumps(fields, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256((prev_hash + canonical).encode()).hexdigest()


def record(conn: sa.Connection, actor: Labelled | str, action: str, target_type: str | None = None,
           target_id: str | int | None = None, *, clinic_id: str | None = None,
           detail: Mapping[str, Any] | None = None, at_ms: int | None = None) -> int:
    """Append one entry in the caller's transaction (it commits or rolls back with the caller's work);
    returns its id. `actor` is an Actor or a label such as "system" or "gateway:gw-1"."""
    user_id, label = (None, actor) if isinstance(actor, str) else (actor.user_id, actor.label)
    # Taking the head row first locks out other appenders until this transaction ends.
    head = conn.execute(
        audit_head.update().where(audit_head.c.id == 1).values(last_id=audit_head.c.last_id + 1)
        .returning(audit_head.c.last_id, audit_head.c.last_hash)
    ).one()
    entry = {
        "id": int(head.last_id), "at_ms": now_ms() if at_ms is None else at_ms, "actor_user_id": user_id,
        "actor": label, "action": action, "target_type": target_type,
        "target_id": None if target_id is None else str(target_id), "clinic_id": clinic_id,
        # Through JSON once, so the hash covers exactly what the database will give back.
        "detail": None if detail is None else json.loads(json.dumps(dict(detail), default=str)),
    }
    digest = entry_hash(head.last_hash, entry)
    conn.execute(audit_log.insert().values(**entry, prev_hash=head.last_hash, hash=digest))
    conn.execute(audit_head.update().where(audit_head.c.id == 1).values(last_hash=digest))
    return int(head.last_id)


def record_now(engine: sa.Engine, actor: Labelled | str, action: str, target_type: str | None = None,
               target_id: str | int | None = None, *, clinic_id: str | None = None,
               detail: Mapping[str, Any] | None = None) -> int:
    """`record` in a transaction of its own: for reads, which have no transaction to join (sync: in a thread)."""
    with engine.begin() as conn:
        return record(conn, actor, action, target_type, target_id, clinic_id=clinic_id, detail=detail)


@dataclass(frozen=True, slots=True)
class Verdict:
    ok: bool
    checked: int
    first_bad_id: int | None = None
    problem: str = ""

    def __str__(self) -> str:
        if self.ok:
            return f"audit log intact: {self.checked} entries, hash chain verified"
        return (f"audit log broken at entry {self.first_bad_id}: {self.problem} "
                f"({self.checked} entries before it verified)")


def verify_rows(rows: Iterator[Mapping[str, Any]], expected_last_id: int | None = None) -> Verdict:
    """Check ids run 1, 2, 3 ... without a gap, each entry links to the previous hash and its own hash matches.

    `expected_last_id` (the head row) also catches entries removed from the end.
    """
    prev_hash, expected_id, checked = GENESIS_HASH, 1, 0
    for row in rows:
        if row["id"] != expected_id:
            what = "missing" if row["id"] > expected_id else "out of order"
            return Verdict(False, checked, expected_id, f"entry {expected_id} is {what} (found {row['id']} next)")
        if row["prev_hash"] != prev_hash:
            return Verdict(False, checked, row["id"], "it does not link to the previous entry's hash "
                                                      "(an entry before it was removed, reordered or rewritten)")
        if entry_hash(prev_hash, row) != row["hash"]:
            return Verdict(False, checked, row["id"], "its content does not match its hash (edited)")
        prev_hash, expected_id, checked = row["hash"], expected_id + 1, checked + 1
    if expected_last_id is not None and expected_last_id > checked:
        return Verdict(False, checked, checked + 1, f"the log ends at entry {checked} but {expected_last_id} "
                                                    "were written (entries removed from the end)")
    return Verdict(True, checked)


def verify(engine: sa.Engine) -> Verdict:
    with engine.connect() as conn:
        last_id = conn.execute(sa.select(audit_head.c.last_id).where(audit_head.c.id == 1)).scalar()
        return verify_rows(_all_rows(conn), None if last_id is None else int(last_id))


def _all_rows(conn: sa.Connection) -> Iterator[dict[str, Any]]:
    after = 0
    while True:
        chunk = conn.execute(sa.select(audit_log).where(audit_log.c.id > after)
                             .order_by(audit_log.c.id).limit(VERIFY_CHUNK)).mappings().all()
        if not chunk:
            return
        for row in chunk:
            yield dict(row)
        after = chunk[-1]["id"]


@dataclass(frozen=True, slots=True)
class AuditQuery:
    actor: str | None = None
    action: str | None = None
    target_type: str | None = None
    target_id: str | None = None
    since_ms: int | None = None
    until_ms: int | None = None
    limit: int = 200


def find(conn: sa.Connection, query: AuditQuery) -> list[dict[str, Any]]:
    """Entries matching the query, newest first."""
    a = audit_log
    q = sa.select(a).order_by(a.c.id.desc()).limit(query.limit)
    for column, value in ((a.c.actor, query.actor), (a.c.action, query.action),
                          (a.c.target_type, query.target_type), (a.c.target_id, query.target_id)):
        if value is not None:
            q = q.where(column == value)
    if query.since_ms is not None:
        q = q.where(a.c.at_ms >= query.since_ms)
    if query.until_ms is not None:
        q = q.where(a.c.at_ms < query.until_ms)
    return [dict(r) for r in conn.execute(q).mappings()]


def to_csv(rows: list[dict[str, Any]]) -> str:
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(EXPORT_COLUMNS)
    for row in rows:
        writer.writerow([json.dumps(row[c], ensure_ascii=False) if c == "detail" and row[c] is not None
                         else row[c] for c in EXPORT_COLUMNS])
    return out.getvalue()
