"""Writing a checked CSV file into the expert directory, all or nothing: a known `ref` updates that expert,
a new one adds an expert, in a few statements for the whole file; the import and every change audited.

The file's own checks are `hq.expert_import` (pure); the profile rules `hq.experts`. Why all or nothing: see
`hq.expert_import`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa

from hq import audit, expert_import, experts
from hq import departments as departments_db
from hq.audit import Labelled
from hq.clock import now_ms as clock_now_ms
from hq.expert_fields import FieldProblem
from hq.expert_import import ImportRow, RowError
from hq.taxonomy import normalise


@dataclass(slots=True)
class ImportOutcome:
    created: list[int] = field(default_factory=list)
    updated: dict[int, dict[str, Any]] = field(default_factory=dict)  # expert id -> {field: [old, new]}
    unchanged: list[int] = field(default_factory=list)
    errors: list[RowError] = field(default_factory=list)


def import_rows(conn: sa.Connection, rows: Sequence[ImportRow], *, now_ms: int | None = None) -> ImportOutcome:
    """Write checked rows (`hq.expert_import.parse`): a known `ref` updates that expert, a new one adds an
    expert; a row's credential updates the expert's credential of the same kind and number, or is added.
    Problems only the database can see (a username, a ref taken) become row errors; the caller rolls the
    transaction back when there are any: nothing of a file with errors is kept."""
    now = clock_now_ms() if now_ms is None else now_ms
    outcome = ImportOutcome()
    facts = experts.Facts(conn).load()
    new: list[tuple[experts.ProfileValues, dict[str, Any] | None]] = []
    for row in rows:
        try:
            expert_id = facts.ref_holder(row.ref)
            if expert_id is None:
                values = experts.check_profile(conn, row.profile, creating=True, facts=facts)
                credential = experts.check_credential(row.credential, creating=True) if row.credential else None
                new.append((values, credential))
                facts.note(-row.row, values.columns)
                continue
            changed = experts.update_expert(conn, expert_id, row.profile, now_ms=now, facts=facts)
            if row.credential is not None:
                changed.update(_import_credential(conn, expert_id, row.credential, now))
            if changed:
                outcome.updated[expert_id] = changed
            else:
                outcome.unchanged.append(expert_id)
        except FieldProblem as problem:
            column = row.headers.get(problem.field, problem.field)
            outcome.errors.append(RowError(row.row, column, problem.message, problem.expected,
                                           _shown(row.profile.get(problem.field))))
    if new and not outcome.errors:
        outcome.created = experts.insert_new(conn, [v for v, _ in new], [c for _, c in new], now)
    return outcome


@dataclass(frozen=True, slots=True)
class ImportReport:
    encoding: str
    delimiter: str
    rows: int  # experts in the file
    created: list[int]
    updated: dict[int, dict[str, Any]]
    unchanged: list[int]
    errors: list[RowError]
    committed: bool
    dry_run: bool

    def to_json(self) -> dict[str, Any]:
        return {"committed": self.committed, "dry_run": self.dry_run, "encoding": self.encoding,
                "delimiter": self.delimiter, "rows": self.rows, "created": len(self.created),
                "updated": len(self.updated), "unchanged": len(self.unchanged),
                "created_ids": self.created, "updated_ids": sorted(self.updated),
                "errors": [e.to_json() for e in self.errors]}


def import_file(engine: sa.Engine, actor: Labelled, data: bytes, *, encoding: str = "utf-8", dry_run: bool = False,
                source: str = "upload") -> ImportReport:
    """Check a CSV file and, when every row is good and this is not a dry run, write it all in one transaction
    with an audit entry per expert created or changed and one for the import. A file with errors (or a dry
    run) changes nothing; the attempt is audited all the same."""
    now = clock_now_ms()
    with engine.connect() as conn:
        with conn.begin() as transaction:
            parsed = expert_import.parse(data, resolve=departments_db.resolver(conn), encoding=encoding)
            outcome = import_rows(conn, parsed.rows, now_ms=now) if not parsed.errors else ImportOutcome()
            errors = parsed.errors + outcome.errors
            committed = not errors and not dry_run
            report = ImportReport(parsed.encoding, parsed.delimiter, len(parsed.rows), outcome.created,
                                  outcome.updated, outcome.unchanged, errors, committed, dry_run)
            if committed:
                # Changes to existing entries get an entry each; the experts an import adds are listed in its own
                # entry (a first import of thousands would otherwise write thousands of entries).
                for expert_id, changed in outcome.updated.items():
                    audit.record(conn, actor, "expert.update", "expert", expert_id,
                                 detail={"via": "csv import", "changed": changed})
                _audit_import(conn, actor, report, source, len(data))
            else:
                transaction.rollback()
        if not committed:  # nothing was written, but the attempt is on record
            with conn.begin():
                _audit_import(conn, actor, report, source, len(data))
    return report


def _audit_import(conn: sa.Connection, actor: Labelled, report: ImportReport, source: str, size: int) -> None:
    action = "expert.import" if report.committed else \
        "expert.import.checked" if report.dry_run and not report.errors else "expert.import.refused"
    audit.record(conn, actor, action, "expert_import", None, detail={
        "source": source, "bytes": size, "encoding": report.encoding, "rows": report.rows,
        "created": len(report.created), "created_ids": report.created if report.committed else [],
        "updated": len(report.updated), "errors": len(report.errors),
        "first_errors": [str(e) for e in report.errors[:5]]})


def _shown(value: Any) -> str | None:
    return None if value is None else str(value)


def _import_credential(conn: sa.Connection, expert_id: int, given: Mapping[str, Any], now: int) -> dict[str, Any]:
    kind, identifier = normalise(given["kind"]), normalise(given.get("identifier", ""))
    for c in experts.credentials_of(conn, expert_id):
        if normalise(c["kind"]) == kind and normalise(c["identifier"]) == identifier:
            changed = experts.update_credential(conn, expert_id, c["id"], given, now_ms=now)
            return {f"credential {c['kind']} {k}": v for k, v in changed.items()}
    experts.add_credential(conn, expert_id, given, now_ms=now)
    return {"credential added": given["kind"]}
