"""CSV import into a real database (SQLite and PostgreSQL): all or nothing, repeatable by ref, credentials
updated by kind and number, problems only the database sees reported as row errors, every change audited."""

from __future__ import annotations

import sqlalchemy as sa

from hq import accounts, directory, directory_import
from hq.models import audit_log
from hq.models import experts as expert_rows

SYSTEM = "user:test"
HEADER = "ref,name,department,time_zone,languages,tags,username,credential_kind,credential_identifier," \
         "credential_expires\n"


def actions(conn: sa.Connection) -> list[tuple[str, str | None]]:
    return [(r.action, r.target_id) for r in conn.execute(sa.select(audit_log.c.action, audit_log.c.target_id)
                                                          .order_by(audit_log.c.id))]


def test_import_creates_then_updates_by_ref_and_audits_each_change(engine: sa.Engine) -> None:
    with engine.begin() as conn:
        accounts.create_user(conn, "dr-li", "expert")
    first = HEADER + ("R1,Dr. Li,心内科,Asia/Shanghai,zh;en,arrhythmia,dr-li,medical license,L-1,2027-06-30\n"
                      "R2,Dr. Wang,神经内科,Asia/Shanghai,zh,,,,,\n")
    report = directory_import.import_file(engine, SYSTEM, first.encode())
    assert report.committed and report.errors == [] and len(report.created) == 2 and report.rows == 2
    again = HEADER + ("R1,Dr. Li,心内科,Asia/Shanghai,zh;en,arrhythmia;heart failure,dr-li,medical license,L-1,"
                      "2029-06-30\n"
                      "R2,Dr. Wang,神经内科,Asia/Shanghai,zh,,,,,\n")
    report = directory_import.import_file(engine, SYSTEM, again.encode())
    assert report.committed and report.created == [] and len(report.updated) == 1 and len(report.unchanged) == 1
    li = next(iter(report.updated))
    assert set(report.updated[li]) == {"tags", "credential medical license expires_on"}
    with engine.connect() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(expert_rows)).scalar() == 2
        profile = directory.profile(conn, li, 1_900_000_000_000 - 10**11)
        assert profile is not None and profile["username"] == "dr-li"
        assert [(c["kind"], str(c["expires_on"])) for c in profile["credentials"]] == [("medical license",
                                                                                         "2029-06-30")]
        done = actions(conn)
    assert ("expert.update", str(li)) in done and [a for a, _ in done].count("expert.update") == 1
    assert [a for a, _ in done].count("expert.import") == 2


def test_a_file_with_any_error_changes_nothing_and_lists_every_error(engine: sa.Engine) -> None:
    with engine.begin() as conn:
        accounts.create_user(conn, "coord", "coordinator")
    text = HEADER + ("R1,Dr. Li,心内科,Asia/Shanghai,zh,,,,,\n"
                     "R2,Dr. Wang,Astrology,Asia/Shanghai,zh,,,,,\n"
                     "R3,Dr. Zhao,心内科,Asia/Shanghai,zh,,coord,,,\n"  # only the database knows coord's role
                     "R4,Dr. Sun,心内科,Asia/Shanghai,zh,,nobody,,,\n")
    report = directory_import.import_file(engine, SYSTEM, text.encode())
    assert not report.committed
    # The file's own errors come first; the database's are only looked for once the file is clean.
    assert [(e.row, e.column) for e in report.errors] == [(3, "department")]
    clean = text.replace("Astrology", "Neurology")
    report = directory_import.import_file(engine, SYSTEM, clean.encode())
    assert not report.committed
    assert [(e.row, e.column, e.message) for e in report.errors] == [
        (4, "username", "'coord' has the role coordinator"), (5, "username", "no console account 'nobody'")]
    with engine.connect() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(expert_rows)).scalar() == 0
        assert [a for a, _ in actions(conn)] == ["expert.import.refused", "expert.import.refused"]


def test_a_dry_run_checks_everything_and_writes_nothing(engine: sa.Engine) -> None:
    text = HEADER + "R1,Dr. Li,心内科,Asia/Shanghai,zh,,,,,\n"
    report = directory_import.import_file(engine, SYSTEM, text.encode(), dry_run=True)
    assert not report.committed and report.dry_run and report.errors == [] and len(report.created) == 1
    with engine.connect() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(expert_rows)).scalar() == 0
        assert [a for a, _ in actions(conn)] == ["expert.import.checked"]


def test_a_thousand_rows_in_one_go(engine: sa.Engine) -> None:
    rows = "".join(f"R{i},Dr. {i},{'心内科' if i % 2 else 'ENT'},Asia/Shanghai,zh;en,tag{i % 7},,license,L{i},"
                   "2030-01-01\n" for i in range(1000))
    report = directory_import.import_file(engine, SYSTEM, (HEADER + rows).encode())
    assert report.committed and len(report.created) == 1000
