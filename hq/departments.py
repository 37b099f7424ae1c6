"""The department taxonomy in the database: resolving any name or synonym to its department, seeding the
canonical taxonomy, coordinators adding departments and synonyms, and who heads which department.

Synchronous functions over a connection (run them in a thread); the names and normalisation are `hq.taxonomy`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import sqlalchemy as sa

from hq import taxonomy
from hq.models import department_heads, department_synonyms, departments, experts, users

CODE_CHARS = frozenset("abcdefghijklmnopqrstuvwxyz0123456789_")


class DepartmentError(ValueError):
    """A department, synonym or head is not acceptable; the message names the field and says why."""

    def __init__(self, field: str, message: str) -> None:
        self.field = field
        super().__init__(f"{field}: {message}")


def resolve(conn: sa.Connection, name: str) -> int | None:
    """The department any of its names means (心内科, 'Cardiology', 'Dept. of Cardiology', its code), or None."""
    keys = taxonomy.lookup_keys(name)
    if not keys:
        return None
    found = dict(conn.execute(sa.select(department_synonyms.c.synonym, department_synonyms.c.department_id)
                              .where(department_synonyms.c.synonym.in_(keys))).all())
    for key in keys:
        if key in found:
            return int(found[key])
    return None


def resolver(conn: sa.Connection) -> Callable[[str], int | None]:
    """`resolve` over one read of every synonym: for resolving many names at once (a CSV import)."""
    table = {key: int(dept) for key, dept in conn.execute(
        sa.select(department_synonyms.c.synonym, department_synonyms.c.department_id))}

    def lookup(name: str) -> int | None:
        for key in taxonomy.lookup_keys(name):
            if key in table:
                return table[key]
        return None

    return lookup


def seed_taxonomy(conn: sa.Connection, seed: tuple[taxonomy.SeedDepartment, ...] = taxonomy.SEED) -> int:
    """Add the seeded departments and synonyms the database does not have yet; returns how many names were
    added. Insert-only: synonyms coordinators added, and seeded names they moved, stay as they are."""
    taxonomy.check_seed(seed)
    ids = dict(conn.execute(sa.select(departments.c.code, departments.c.id)).all())
    taken = set(conn.execute(sa.select(department_synonyms.c.synonym)).scalars())
    added = 0
    for department in seed:
        if department.code not in ids:
            result = conn.execute(departments.insert().values(code=department.code, name=department.name,
                                                              name_zh=department.name_zh))
            ids[department.code] = int(result.inserted_primary_key[0])  # type: ignore[index]
        rows = [{"synonym": key, "department_id": ids[department.code], "display": display}
                for key, display in taxonomy.seed_synonyms(department).items() if key not in taken]
        if rows:
            conn.execute(department_synonyms.insert(), rows)
            taken.update(r["synonym"] for r in rows)
            added += len(rows)
    return added


def department_names(conn: sa.Connection) -> dict[int, str]:
    return {int(i): n for i, n in conn.execute(sa.select(departments.c.id, departments.c.name))}


def get_department(conn: sa.Connection, department_id: int) -> dict[str, Any] | None:
    rows = list_departments(conn, [department_id])
    return rows[0] if rows else None


def list_departments(conn: sa.Connection, only: list[int] | None = None) -> list[dict[str, Any]]:
    """Every department (or `only` these) with its synonyms, heads and number of active experts, by name."""
    q = sa.select(departments).order_by(departments.c.name)
    if only is not None:
        q = q.where(departments.c.id.in_(only))
    rows = [dict(r) for r in conn.execute(q).mappings()]
    wanted = [r["id"] for r in rows]
    synonyms: dict[int, list[dict[str, str]]] = {}
    for s in conn.execute(sa.select(department_synonyms).where(department_synonyms.c.department_id.in_(wanted))
                          .order_by(department_synonyms.c.display)).mappings():
        synonyms.setdefault(s["department_id"], []).append({"key": s["synonym"], "display": s["display"]})
    heads: dict[int, list[dict[str, Any]]] = {}
    for h in conn.execute(sa.select(department_heads.c.department_id, users.c.id, users.c.username,
                                    users.c.display_name)
                          .join(users, users.c.id == department_heads.c.user_id)
                          .where(department_heads.c.department_id.in_(wanted)).order_by(users.c.username)).mappings():
        heads.setdefault(h["department_id"], []).append(
            {"user_id": h["id"], "username": h["username"], "display_name": h["display_name"]})
    counts: dict[int, int] = dict(conn.execute(sa.select(experts.c.department_id, sa.func.count())
                               .where(experts.c.active.is_(True), experts.c.department_id.in_(wanted))
                               .group_by(experts.c.department_id)).all())
    for r in rows:
        r["synonyms"] = synonyms.get(r["id"], [])
        r["heads"] = heads.get(r["id"], [])
        r["active_experts"] = int(counts.get(r["id"], 0))
    return rows


def create_department(conn: sa.Connection, code: str, name: str, name_zh: str = "") -> int:
    code = code.strip().lower()
    if not 2 <= len(code) <= 64 or not set(code) <= CODE_CHARS:
        raise DepartmentError("code", f"{code!r} must be 2-64 lower-case letters, digits or '_', e.g. sports_medicine")
    if not name.strip():
        raise DepartmentError("name", "the department needs a display name")
    if conn.execute(sa.select(departments.c.id).where(departments.c.code == code)).first() is not None:
        raise DepartmentError("code", f"a department with code {code!r} exists")
    names = {taxonomy.normalise(n): n.strip() for n in (code.replace("_", " "), name, name_zh) if n.strip()}
    for display in names.values():
        _check_free(conn, display)
    result = conn.execute(departments.insert().values(code=code, name=name.strip(), name_zh=name_zh.strip()))
    department_id = int(result.inserted_primary_key[0])  # type: ignore[index]
    conn.execute(department_synonyms.insert(), [{"synonym": key, "department_id": department_id, "display": display}
                                                for key, display in names.items()])
    return department_id


def _check_free(conn: sa.Connection, name: str) -> str:
    key = taxonomy.normalise(name)
    if not key:
        raise DepartmentError("synonym", f"{name!r} has no letters or characters to match on")
    if len(key) > 200:
        raise DepartmentError("synonym", "at most 200 characters")
    owner = conn.execute(sa.select(departments.c.name).join(
        department_synonyms, department_synonyms.c.department_id == departments.c.id)
        .where(department_synonyms.c.synonym == key)).scalar()
    if owner is not None:
        raise DepartmentError("synonym", f"{name!r} already means {owner}: one name can mean one department only")
    return key


def add_synonym(conn: sa.Connection, department_id: int, name: str) -> str:
    """Make `name` another name of the department; returns its normalised key."""
    if conn.execute(sa.select(departments.c.id).where(departments.c.id == department_id)).first() is None:
        raise DepartmentError("department_id", f"no department {department_id}")
    key = _check_free(conn, name)
    conn.execute(department_synonyms.insert().values(synonym=key, department_id=department_id,
                                                     display=name.strip()))
    return key


def remove_synonym(conn: sa.Connection, department_id: int, name: str) -> None:
    """Forget one name of a department; its code and canonical names cannot be removed."""
    row = conn.execute(sa.select(departments).where(departments.c.id == department_id)).mappings().first()
    if row is None:
        raise DepartmentError("department_id", f"no department {department_id}")
    key = taxonomy.normalise(name)
    canonical = {taxonomy.normalise(n) for n in (row["code"].replace("_", " "), row["name"], row["name_zh"]) if n}
    if key in canonical:
        raise DepartmentError("synonym", f"{name!r} is the department's own name or code, not a removable synonym")
    removed = conn.execute(department_synonyms.delete().where(department_synonyms.c.synonym == key,
                                                              department_synonyms.c.department_id == department_id))
    if removed.rowcount == 0:
        raise DepartmentError("synonym", f"{name!r} is not a name of department {row['name']}")


def set_heads(conn: sa.Connection, department_id: int, user_ids: list[int]) -> None:
    """The department's heads become exactly `user_ids` (users with the department_head role)."""
    if conn.execute(sa.select(departments.c.id).where(departments.c.id == department_id)).first() is None:
        raise DepartmentError("department_id", f"no department {department_id}")
    found = dict(conn.execute(sa.select(users.c.id, users.c.role).where(users.c.id.in_(user_ids))).all())
    for user_id in user_ids:
        if user_id not in found:
            raise DepartmentError("user_ids", f"no user {user_id}")
        if found[user_id] != "department_head":
            raise DepartmentError("user_ids", f"user {user_id} has the role {found[user_id]}, not department_head")
    conn.execute(department_heads.delete().where(department_heads.c.department_id == department_id))
    if user_ids:
        conn.execute(department_heads.insert(),
                     [{"department_id": department_id, "user_id": u} for u in sorted(set(user_ids))])
