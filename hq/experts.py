"""The expert directory's entries: creating and editing profiles, tags and credentials (the earliest expiry
kept on the expert), and the candidates matching ranks for a consultation request.

Synchronous functions over a connection (run them in a thread; audit in the caller's transaction). Field rules
are `hq.expert_fields`, reading the directory `hq.directory`, the CSV import `hq.directory_import`, ranking
`hq.matching`, capability figures `hq.capability`, review flags `hq.review`.
"""

from __future__ import annotations

import functools
import json
import weakref
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date
from typing import Any

import sqlalchemy as sa

from hq import departments as departments_db
from hq import expert_fields as fields
from hq import review
from hq.clock import now_ms as clock_now_ms
from hq.expert_fields import FieldProblem
from hq.matching import Candidate, MatchRequest
from hq.models import (
    departments,
    directory_version,
    expert_capability,
    expert_credentials,
    expert_tags,
    experts,
    users,
)
from hq.taxonomy import normalise

DEFAULT_LANGUAGES = ("zh",)
PROFILE_FIELDS = ("name", "title", "hospital", "department", "scope_of_practice", "time_zone", "languages", "tags",
                  "daily_cap", "active", "external_ref", "username")
# What an expert may change in their own profile; department, cap, activity and identity are the coordinators'.
SELF_EDITABLE = frozenset({"title", "hospital", "scope_of_practice", "time_zone", "languages", "tags"})
CREDENTIAL_FIELDS = ("kind", "identifier", "issuer", "expires_on")


class ExpertNotFound(LookupError):
    def __init__(self, expert_id: int) -> None:
        self.expert_id = expert_id
        super().__init__(f"no expert {expert_id}")


# ---- profiles -----------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class ProfileValues:
    columns: dict[str, Any]
    tags: dict[str, str] | None  # None: leave the tags as they are


class Facts:
    """What checking a profile asks the database (departments, refs, accounts): asked as needed, or loaded
    once for a whole import (`load`), so that ten thousand rows are not ten thousand rounds of queries."""

    def __init__(self, conn: sa.Connection) -> None:
        self.conn = conn
        self.loaded = False
        self.department_ids: set[int] = set()
        self.refs: dict[str, int] = {}  # external_ref -> expert id
        self.accounts: dict[str, tuple[int, str]] = {}  # username -> (user id, role)
        self.linked: dict[int, int] = {}  # user id -> expert id
        self._resolve: Callable[[str], int | None] = functools.partial(departments_db.resolve, conn)

    def load(self) -> Facts:
        c = self.conn
        self.department_ids = set(c.execute(sa.select(departments.c.id)).scalars())
        self.refs = {r: int(i) for r, i in c.execute(sa.select(experts.c.external_ref, experts.c.id)
                                                     .where(experts.c.external_ref.is_not(None)))}
        self.accounts = {n: (int(i), r) for n, i, r in c.execute(sa.select(users.c.username, users.c.id,
                                                                           users.c.role))}
        self.linked = {int(u): int(i) for u, i in c.execute(sa.select(experts.c.user_id, experts.c.id)
                                                            .where(experts.c.user_id.is_not(None)))}
        self._resolve = departments_db.resolver(c)
        self.loaded = True
        return self

    def resolve(self, name: str) -> int | None:
        return self._resolve(name)

    def department_exists(self, department_id: int) -> bool:
        if self.loaded:
            return department_id in self.department_ids
        return self.conn.execute(sa.select(departments.c.id).where(departments.c.id == department_id)).first() \
            is not None

    def ref_holder(self, ref: str) -> int | None:
        if self.loaded:
            return self.refs.get(ref)
        found = self.conn.execute(sa.select(experts.c.id).where(experts.c.external_ref == ref)).scalar()
        return None if found is None else int(found)

    def account(self, username: str) -> tuple[int, str] | None:
        if self.loaded:
            return self.accounts.get(username)
        row = self.conn.execute(sa.select(users.c.id, users.c.role).where(users.c.username == username)).first()
        return None if row is None else (int(row.id), str(row.role))

    def expert_of_user(self, user_id: int) -> int | None:
        if self.loaded:
            return self.linked.get(user_id)
        found = self.conn.execute(sa.select(experts.c.id).where(experts.c.user_id == user_id)).scalar()
        return None if found is None else int(found)

    def note(self, expert_id: int, columns: Mapping[str, Any]) -> None:
        """A checked profile was written: later rows of the same import see it."""
        if self.loaded:
            if columns.get("external_ref"):
                self.refs[columns["external_ref"]] = expert_id
            if columns.get("user_id") is not None:
                self.linked[columns["user_id"]] = expert_id


def check_profile(conn: sa.Connection, given: Mapping[str, Any], *, creating: bool,
                  expert_id: int | None = None, facts: Facts | None = None) -> ProfileValues:
    """Validate profile fields (from JSON, a form or a CSV row); raises FieldProblem for the first bad one.
    Creating: name and department are required, the rest has defaults."""
    facts = facts or Facts(conn)
    unknown = sorted(set(given) - set(PROFILE_FIELDS))
    if unknown:
        raise FieldProblem(unknown[0], "is not a profile field", "one of " + ", ".join(PROFILE_FIELDS))
    columns: dict[str, Any] = {}
    for name in ("name", "title", "hospital"):
        if name in given or (creating and name == "name"):
            columns[name] = fields.text(name, _as_text(name, given.get(name, "")), max_length=200,
                                        required=name == "name")
    if "scope_of_practice" in given:
        columns["scope_of_practice"] = fields.text("scope_of_practice", _as_text("scope_of_practice",
                                                   given["scope_of_practice"]), max_length=4000)
    if "department" in given or creating:
        columns["department_id"] = _department(facts, given.get("department"))
    if "time_zone" in given:
        columns["time_zone"] = fields.time_zone(_as_text("time_zone", given["time_zone"]))
    elif creating:
        columns["time_zone"] = "UTC"
    if "languages" in given:
        columns["languages"] = fields.languages(given["languages"])
    elif creating:
        columns["languages"] = list(DEFAULT_LANGUAGES)
    if "daily_cap" in given:
        columns["daily_cap"] = fields.daily_cap(given["daily_cap"])
    if "active" in given:
        value = given["active"]
        columns["active"] = value if isinstance(value, bool) else fields.yes_no(_as_text("active", value), "active")
    if "external_ref" in given:
        ref = fields.text("external_ref", _as_text("external_ref", given["external_ref"] or ""), max_length=64)
        columns["external_ref"] = ref or None
        if ref:
            holder = facts.ref_holder(ref)
            if holder is not None and holder != expert_id:
                raise FieldProblem("external_ref", f"{ref!r} is already expert {holder}'s", "a reference no other "
                                   "expert has")
    if "username" in given:
        columns["user_id"] = _linked_user(facts, given["username"], expert_id)
    tags = fields.tags(given["tags"]) if "tags" in given else ({} if creating else None)
    return ProfileValues(columns, tags)


def _as_text(field: str, value: Any) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, int | float) and not isinstance(value, bool):
        return str(value)
    raise FieldProblem(field, f"{value!r} is not text", "a string")


def _department(facts: Facts, value: Any) -> int:
    expected = "a department's id, or any of its names or synonyms (e.g. 心内科 or Cardiology); see /departments"
    if isinstance(value, int) and not isinstance(value, bool):
        if not facts.department_exists(value):
            raise FieldProblem("department", f"no department {value}", expected)
        return value
    if not isinstance(value, str) or not value.strip():
        raise FieldProblem("department", "is missing" if value in (None, "") else f"{value!r} is not a name",
                           expected)
    found = facts.resolve(value)
    if found is None:
        raise FieldProblem("department", f"{value.strip()!r} is not a known department or synonym", expected)
    return found


def _linked_user(facts: Facts, username: Any, expert_id: int | None) -> int | None:
    if username in (None, ""):
        return None
    expected = "the user name of an existing console account with the role expert, not linked to another expert"
    name = _as_text("username", username).strip().lower()
    account = facts.account(name)
    if account is None:
        raise FieldProblem("username", f"no console account {name!r}", expected)
    user_id, role = account
    if role != "expert":
        raise FieldProblem("username", f"{name!r} has the role {role}", expected)
    holder = facts.expert_of_user(user_id)
    if holder is not None and holder != expert_id:
        # An import's rows not yet written are noted under minus their row number.
        other = f"expert {holder}" if holder > 0 else f"the expert of row {-holder}"
        raise FieldProblem("username", f"{name!r} is already linked to {other}", expected)
    return user_id


def _search_text(columns: Mapping[str, Any]) -> str:
    parts = (columns.get("name"), columns.get("title"), columns.get("hospital"), columns.get("external_ref"))
    return normalise(" ".join(p for p in parts if p))[:600]


def create_expert(conn: sa.Connection, given: Mapping[str, Any], *, now_ms: int | None = None,
                  facts: Facts | None = None) -> int:
    """A new directory entry from profile fields (see PROFILE_FIELDS; name and department required, department by
    id or any synonym); returns its id. E.g. create_expert(conn, {"name": "Dr. Li", "department": "心内科"})."""
    values = check_profile(conn, given, creating=True, facts=facts)
    return insert_new(conn, [values], [None], clock_now_ms() if now_ms is None else now_ms)[0]


def insert_new(conn: sa.Connection, profiles: Sequence[ProfileValues],
                credentials: Sequence[Mapping[str, Any] | None], now: int) -> list[int]:
    """Insert checked new experts (with at most one credential each) in a few statements; their ids in order."""
    rows = []
    for values, credential in zip(profiles, credentials, strict=True):
        columns = {"title": "", "hospital": "", "scope_of_practice": "", "daily_cap": 8, "active": True,
                   "external_ref": None, "user_id": None, **values.columns}
        rows.append({**columns, "search_text": _search_text(columns), "created_ms": now, "profile_updated_ms": now,
                     "credentials_expire_on": credential.get("expires_on") if credential else None})
    ids = [int(i) for i in conn.execute(experts.insert().returning(experts.c.id, sort_by_parameter_order=True),
                                        rows).scalars()]
    tag_rows = [{"expert_id": i, "tag": k, "display": v} for i, values in zip(ids, profiles, strict=True)
                for k, v in (values.tags or {}).items()]
    if tag_rows:
        conn.execute(expert_tags.insert(), tag_rows)
    credential_rows = [{"identifier": "", "issuer": "", "expires_on": None, **c, "expert_id": i, "updated_ms": now}
                       for i, c in zip(ids, credentials, strict=True) if c is not None]
    if credential_rows:
        conn.execute(expert_credentials.insert(), credential_rows)
    return ids


def update_expert(conn: sa.Connection, expert_id: int, given: Mapping[str, Any], *, now_ms: int | None = None,
                  facts: Facts | None = None) -> dict[str, Any]:
    """Change some profile fields; returns {field: [old, new]} of what changed (empty: nothing did)."""
    before = _profile_row(conn, expert_id)
    values = check_profile(conn, given, creating=False, expert_id=expert_id, facts=facts)
    changed = {k: [before[k], v] for k, v in values.columns.items() if before[k] != v}
    old_tags = _tags_of(conn, [expert_id]).get(expert_id, {})
    if values.tags is not None and set(values.tags) != set(old_tags):
        changed["tags"] = [sorted(old_tags.values()), sorted(values.tags.values())]
        conn.execute(expert_tags.delete().where(expert_tags.c.expert_id == expert_id))
        _write_tags(conn, expert_id, values.tags)
    if changed:
        merged = {**before, **values.columns}
        conn.execute(experts.update().where(experts.c.id == expert_id).values(
            **values.columns, search_text=_search_text(merged),
            profile_updated_ms=clock_now_ms() if now_ms is None else now_ms))
    return changed


def mark_reviewed(conn: sa.Connection, expert_id: int, *, now_ms: int | None = None) -> None:
    """A coordinator confirmed the entry is still right: its review clocks restart."""
    _profile_row(conn, expert_id)
    conn.execute(experts.update().where(experts.c.id == expert_id)
                 .values(reviewed_ms=clock_now_ms() if now_ms is None else now_ms))


def _profile_row(conn: sa.Connection, expert_id: int) -> dict[str, Any]:
    row = conn.execute(sa.select(experts).where(experts.c.id == expert_id)).mappings().first()
    if row is None:
        raise ExpertNotFound(expert_id)
    return dict(row)


def _write_tags(conn: sa.Connection, expert_id: int, tags: Mapping[str, str]) -> None:
    conn.execute(expert_tags.insert(), [{"expert_id": expert_id, "tag": k, "display": v} for k, v in tags.items()])


def _tags_of(conn: sa.Connection, expert_ids: Sequence[int]) -> dict[int, dict[str, str]]:
    found: dict[int, dict[str, str]] = {}
    for row in conn.execute(sa.select(expert_tags).where(expert_tags.c.expert_id.in_(expert_ids))
                            .order_by(expert_tags.c.display)):
        found.setdefault(row.expert_id, {})[row.tag] = row.display
    return found


# ---- credentials --------------------------------------------------------------------------------
def check_credential(given: Mapping[str, Any], *, creating: bool) -> dict[str, Any]:
    unknown = sorted(set(given) - set(CREDENTIAL_FIELDS))
    if unknown:
        raise FieldProblem(unknown[0], "is not a credential field", "one of " + ", ".join(CREDENTIAL_FIELDS))
    values: dict[str, Any] = {}
    if "kind" in given or creating:
        values["kind"] = fields.text("kind", _as_text("kind", given.get("kind", "")), max_length=64, required=True)
    for name, length in (("identifier", 100), ("issuer", 200)):
        if name in given:
            values[name] = fields.text(name, _as_text(name, given[name] or ""), max_length=length)
    if "expires_on" in given:
        raw = given["expires_on"]
        values["expires_on"] = raw if isinstance(raw, date) or raw is None else None if raw == "" else \
            fields.iso_date(_as_text("expires_on", raw), "expires_on")
    return values


def add_credential(conn: sa.Connection, expert_id: int, given: Mapping[str, Any], *,
                   now_ms: int | None = None) -> int:
    values = check_credential(given, creating=True)
    _profile_row(conn, expert_id)
    now = clock_now_ms() if now_ms is None else now_ms
    result = conn.execute(expert_credentials.insert().values(expert_id=expert_id, updated_ms=now, **values))
    _credentials_changed(conn, expert_id, now)
    return int(result.inserted_primary_key[0])  # type: ignore[index]


def update_credential(conn: sa.Connection, expert_id: int, credential_id: int, given: Mapping[str, Any], *,
                      now_ms: int | None = None) -> dict[str, Any]:
    """Change a credential (a renewal: a new expiry); returns {field: [old, new]} of what changed."""
    before = _credential_row(conn, expert_id, credential_id)
    values = check_credential(given, creating=False)
    changed = {k: [before[k], v] for k, v in values.items() if before[k] != v}
    if changed:
        now = clock_now_ms() if now_ms is None else now_ms
        conn.execute(expert_credentials.update().where(expert_credentials.c.id == credential_id)
                     .values(**values, updated_ms=now))
        _credentials_changed(conn, expert_id, now)
    return changed


def remove_credential(conn: sa.Connection, expert_id: int, credential_id: int, *, now_ms: int | None = None
                      ) -> dict[str, Any]:
    before = _credential_row(conn, expert_id, credential_id)
    conn.execute(expert_credentials.delete().where(expert_credentials.c.id == credential_id))
    _credentials_changed(conn, expert_id, clock_now_ms() if now_ms is None else now_ms)
    return before


class CredentialNotFound(LookupError):
    pass


def _credential_row(conn: sa.Connection, expert_id: int, credential_id: int) -> dict[str, Any]:
    _profile_row(conn, expert_id)
    row = conn.execute(sa.select(expert_credentials).where(expert_credentials.c.id == credential_id,
                                                           expert_credentials.c.expert_id == expert_id)
                       ).mappings().first()
    if row is None:
        raise CredentialNotFound(f"expert {expert_id} has no credential {credential_id}")
    return dict(row)


def _credentials_changed(conn: sa.Connection, expert_id: int, now: int) -> None:
    # The earliest expiry is kept on the expert so matching and the directory need no join to exclude them.
    earliest = sa.select(sa.func.min(expert_credentials.c.expires_on)).where(
        expert_credentials.c.expert_id == expert_id).scalar_subquery()
    conn.execute(experts.update().where(experts.c.id == expert_id)
                 .values(credentials_expire_on=earliest, profile_updated_ms=now))


def credentials_of(conn: sa.Connection, expert_id: int) -> list[dict[str, Any]]:
    return [dict(r) for r in conn.execute(
        sa.select(expert_credentials).where(expert_credentials.c.expert_id == expert_id)
        .order_by(expert_credentials.c.expires_on.is_(None), expert_credentials.c.expires_on,
                  expert_credentials.c.id)).mappings()]


# ---- matching candidates ------------------------------------------------------------------------
@functools.lru_cache(maxsize=1024)
def _languages(raw: str) -> tuple[str, ...]:
    # Few distinct language lists exist ('["zh"]', '["zh", "en"]'): parse each once.
    parsed = json.loads(raw)
    return tuple(parsed) if isinstance(parsed, list) else ()


@dataclass(frozen=True, slots=True)
class _Pool:
    """The active experts with a daily cap of one department (or of all, `department_id` None) as matching
    reads them, at one directory version: (id, department, name, languages, cap, earliest credential expiry,
    median response) each, and each one's tags."""

    version: int
    rows: tuple[tuple[int, int, str, tuple[str, ...], int, date | None, float | None], ...]
    tags: dict[int, frozenset[str]]


# Per engine (a process may talk to several databases), per department: the directory changes rarely and is
# read for every dispatch, so it is read again only when `directory_version` says it changed.
_pools: weakref.WeakKeyDictionary[sa.Engine, dict[int | None, _Pool]] = weakref.WeakKeyDictionary()


def _pool_queries() -> tuple[sa.Select[Any], sa.Select[Any], sa.Select[Any], sa.Select[Any], sa.Select[Any]]:
    # Built once: constructing the statements costs more than SQLite takes to run them for a department.
    e, cap, t = experts, expert_capability, expert_tags
    base = (sa.select(e.c.id, e.c.department_id, e.c.name, sa.cast(e.c.languages, sa.Text), e.c.daily_cap,
                      e.c.credentials_expire_on, cap.c.median_response_s)
            .select_from(e.outerjoin(cap, cap.c.expert_id == e.c.id))
            .where(e.c.active.is_(True), e.c.daily_cap > 0))
    in_department = e.c.department_id == sa.bindparam("department_id")
    tags = sa.select(t.c.expert_id, t.c.tag).join_from(t, e, e.c.id == t.c.expert_id).where(
        e.c.active.is_(True), e.c.daily_cap > 0)
    version = sa.select(directory_version.c.version).where(directory_version.c.id == 1)
    return base, base.where(in_department), tags, tags.where(in_department), version


_ANY_DEPARTMENT, _IN_DEPARTMENT, _TAGS_ANY_DEPARTMENT, _TAGS_IN_DEPARTMENT, _VERSION = _pool_queries()


def _pool(conn: sa.Connection, department_id: int | None) -> _Pool:
    version = int(conn.execute(_VERSION).scalar_one())  # before the rows: a change after this is seen next time
    pools = _pools.setdefault(conn.engine, {})
    pool = pools.get(department_id)
    if pool is not None and pool.version == version:
        return pool
    if department_id is None:
        query, tag_query, params = _ANY_DEPARTMENT, _TAGS_ANY_DEPARTMENT, {}
    else:
        query, tag_query, params = _IN_DEPARTMENT, _TAGS_IN_DEPARTMENT, {"department_id": department_id}
    # .all(): one fetchall, several times faster than iterating the result row by row.
    rows = tuple((r[0], r[1], r[2], _languages(r[3]), r[4], r[5], r[6]) for r in conn.execute(query, params).all())
    tags: dict[int, set[str]] = {}
    for expert_id, tag in conn.execute(tag_query, params).all():
        tags.setdefault(expert_id, set()).add(tag)
    pool = pools[department_id] = _Pool(version, rows, {i: frozenset(x) for i, x in tags.items()})
    return pool


def candidates(conn: sa.Connection, request: MatchRequest, *, now_ms: int,
               available_now: Callable[[list[int]], set[int]],
               load_today: Callable[[list[int]], dict[int, int]]) -> list[Candidate]:
    """The experts `hq.matching.rank` may choose from for `request`: active, in the requested department (any
    department when it is None), every credential valid today (UTC), not excluded, below their daily cap.

    The directory's part comes from memory while `directory_version` is unchanged (one read); `available_now(ids)`
    (from scheduling) and `load_today(ids)` (from consultations) are asked once each, for the experts that pass
    those filters. A candidate's `tags` are those of its tags the request asks for: the others cannot change its
    rank.
    """
    pool = _pool(conn, request.department_id)
    today = review.utc_day(now_ms)
    exclude = request.exclude
    rows = [r for r in pool.rows if (r[5] is None or r[5] >= today) and r[0] not in exclude]
    if not rows:
        return []
    ids = [r[0] for r in rows]
    available = available_now(ids)
    load = load_today(ids)
    wanted, tags = request.tags, pool.tags
    expires_today = review.day_end_ms(today)
    none: frozenset[str] = frozenset()
    # Each distinct tag set met once: many experts share theirs, and thousands of new frozensets per request
    # would bring the collector's full passes (the tail of a dispatch) that much sooner.
    asked: dict[frozenset[str], frozenset[str]] = {}
    found = []
    for expert_id, department_id, name, languages, cap_today, expires_on, median in rows:
        taken = load.get(expert_id, 0)
        if taken >= cap_today:
            continue
        own = tags.get(expert_id)
        matched = none
        if own is not None:
            hit = asked.get(own)
            matched = hit if hit is not None else asked.setdefault(own, own & wanted or none)
        found.append(Candidate(expert_id, department_id, matched, languages, expert_id in available, taken,
                               cap_today, median, name, True, expires_today if expires_on == today else None))
    return found


# One probe of the time-zone index per distinct zone (a loose index scan: a directory has thousands of experts in
# a handful of zones), where SELECT DISTINCT would read every expert.
_TIME_ZONES = sa.text(
    "WITH RECURSIVE z(name) AS ("
    " SELECT min(time_zone) FROM experts"
    " UNION ALL SELECT (SELECT min(time_zone) FROM experts WHERE time_zone > z.name) FROM z WHERE z.name IS NOT NULL"
    ") SELECT name FROM z WHERE name IS NOT NULL")


def time_zones(conn: sa.Connection) -> list[str]:
    """The time zones the directory's experts (active or not) are in, as stored, sorted."""
    return [str(name) for name in conn.execute(_TIME_ZONES).scalars()]
