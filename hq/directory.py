"""Reading the expert directory: search and filters (text, department, tag, language, review flag), one
expert's full profile (credentials, tags, live capability figures, review flags), and what each role may see.

Synchronous reads over a connection. Writing profiles is `hq.experts`; the review rules are `hq.review`, and
the SQL filter here asks the database the same questions (a test holds the two to the same answers).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import sqlalchemy as sa

from hq import capability, departments, review
from hq import experts as experts_db
from hq.auth import Actor, Role
from hq.clock import iso_from_ms
from hq.expert_fields import FieldProblem, languages
from hq.models import departments as departments_table
from hq.models import expert_capability, expert_credentials, expert_tags, experts, users
from hq.query_params import ParamError
from hq.taxonomy import normalise

REVIEW_CODES = ("not_updated", "not_used", "credential_expired", "credential_expiring", "no_credentials")
MAX_PAGE = 200


@dataclass(frozen=True, slots=True)
class DirectoryQuery:
    text: str | None = None
    department_id: int | None = None
    tag: str | None = None  # normalised
    language: str | None = None  # primary subtag, e.g. "zh"
    review: str | None = None  # "any" or one of REVIEW_CODES
    include_inactive: bool = False
    limit: int = 50
    offset: int = 0


DIRECTORY_PARAMETERS = ("q", "department", "tag", "language", "review", "include_inactive", "limit", "offset")


def parse_query(conn: sa.Connection, params: Mapping[str, str]) -> DirectoryQuery:
    """The directory's query parameters (console form and API alike); ParamError names the bad one."""
    for name in params:
        if name not in DIRECTORY_PARAMETERS:
            raise ParamError(name, f"unknown parameter {name!r}", "one of " + ", ".join(DIRECTORY_PARAMETERS))
    department_id = None
    if text := params.get("department", "").strip():
        department_id = int(text) if text.isdigit() else departments.resolve(conn, text)
        if department_id is None:
            raise ParamError("department", f"{text!r} is not a known department or synonym",
                             "a department id or any of its names, e.g. 心内科 or Cardiology")
    language = None
    if text := params.get("language", "").strip():
        try:
            language = languages(text)[0].split("-")[0]
        except FieldProblem as exc:
            raise ParamError("language", exc.message, exc.expected) from None
    review_code = params.get("review", "").strip() or None
    if review_code is not None and review_code not in ("any", *REVIEW_CODES):
        raise ParamError("review", f"unknown review flag {review_code!r}", "any, " + ", ".join(REVIEW_CODES))
    return DirectoryQuery(
        text=params.get("q", "").strip() or None, department_id=department_id,
        tag=normalise(params.get("tag", "")) or None, language=language, review=review_code,
        include_inactive=params.get("include_inactive", "") in ("1", "true", "yes", "on"),
        limit=_int(params, "limit", 50, 1, MAX_PAGE), offset=_int(params, "offset", 0, 0, 10**9))


def _int(params: Mapping[str, str], name: str, default: int, low: int, high: int) -> int:
    text = params.get(name, "").strip()
    if not text:
        return default
    if not text.isascii() or not text.isdigit() or not low <= int(text) <= high:
        raise ParamError(name, f"{text!r} is not allowed", f"a whole number from {low} to {high}")
    return int(text)


# ---- who sees what ------------------------------------------------------------------------------
def department_scope(actor: Actor) -> frozenset[int] | None:
    """The departments whose experts the actor may list: None for all. Department heads: theirs."""
    return actor.department_ids if actor.role is Role.DEPARTMENT_HEAD else None


def sees_full_profiles(actor: Actor) -> bool:
    """Credentials, review flags and the account link are for those who run the directory; clinic staff see
    the public profile they choose an expert by."""
    return actor.role in (Role.ADMIN, Role.COORDINATOR, Role.DEPARTMENT_HEAD)


def may_view(actor: Actor, expert: Mapping[str, Any]) -> bool:
    if actor.role in (Role.ADMIN, Role.COORDINATOR, Role.CLINIC_STAFF):
        return True
    if actor.role is Role.DEPARTMENT_HEAD:
        return bool(expert["department_id"] in actor.department_ids)
    return actor.role is Role.EXPERT and actor.expert_id == int(expert["id"])


def may_edit(actor: Actor, expert_id: int) -> bool:
    """Coordinators edit any profile, experts their own (`hq.experts.SELF_EDITABLE` fields only)."""
    return actor.role in (Role.ADMIN, Role.COORDINATOR) or (actor.role is Role.EXPERT and
                                                             actor.expert_id == expert_id)


# ---- the review filter, in SQL ------------------------------------------------------------------
def review_condition(code: str, now_ms: int) -> sa.ColumnElement[bool]:
    """SQL true for experts flagged `code` ("any": any flag), as `hq.review.review_flags` decides."""
    e, cap = experts, expert_capability
    cutoff = review.months_before(now_ms, review.STALE_AFTER_MONTHS)
    today = review.utc_day(now_ms)
    not_reviewed = sa.or_(e.c.reviewed_ms.is_(None), e.c.reviewed_ms < cutoff)
    has_credentials = sa.exists().where(expert_credentials.c.expert_id == e.c.id)
    conditions = {
        "not_updated": sa.and_(e.c.profile_updated_ms < cutoff, not_reviewed),
        "not_used": sa.and_(sa.func.coalesce(cap.c.last_consultation_ms, e.c.created_ms) < cutoff, not_reviewed),
        "credential_expired": e.c.credentials_expire_on < today,
        "credential_expiring": sa.and_(e.c.credentials_expire_on >= today, e.c.credentials_expire_on <= today +
                                       timedelta(days=review.EXPIRING_WITHIN_DAYS)),
        "no_credentials": ~has_credentials,
    }
    return sa.or_(*conditions.values()) if code == "any" else conditions[code]


# ---- finding experts ----------------------------------------------------------------------------
def _listing(query: DirectoryQuery, scope: frozenset[int] | None, now_ms: int,
             text_department: int | None) -> sa.Select[Any]:
    e, cap = experts, expert_capability
    q = sa.select(e.c.id).select_from(e.outerjoin(cap, cap.c.expert_id == e.c.id))
    if not query.include_inactive:
        q = q.where(e.c.active.is_(True))
    if scope is not None:
        q = q.where(e.c.department_id.in_(sorted(scope)))
    if query.department_id is not None:
        q = q.where(e.c.department_id == query.department_id)
    if query.text:
        key = normalise(query.text).replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
        matches = e.c.search_text.like(f"%{key}%", escape="\\")
        q = q.where(sa.or_(matches, e.c.department_id == text_department) if text_department else matches)
    if query.tag:
        q = q.where(sa.exists().where(expert_tags.c.expert_id == e.c.id, expert_tags.c.tag == query.tag))
    if query.language:
        spoken = sa.cast(e.c.languages, sa.Text)
        q = q.where(sa.or_(spoken.like(f'%"{query.language}"%'), spoken.like(f'%"{query.language}-%')))
    if query.review:
        q = q.where(review_condition(query.review, now_ms))
    return q


def find(conn: sa.Connection, query: DirectoryQuery, *, scope: frozenset[int] | None, now_ms: int
         ) -> tuple[list[dict[str, Any]], int]:
    """(one page of experts as summaries, how many match in all), by name."""
    text_department = departments.resolve(conn, query.text) if query.text else None
    listing = _listing(query, scope, now_ms, text_department).subquery()
    total = int(conn.execute(sa.select(sa.func.count()).select_from(listing)).scalar_one())
    page_ids = list(conn.execute(
        sa.select(experts.c.id).where(experts.c.id.in_(sa.select(listing.c.id)))
        .order_by(experts.c.name, experts.c.id).limit(query.limit).offset(query.offset)).scalars())
    return summaries(conn, page_ids, now_ms), total


def summaries(conn: sa.Connection, expert_ids: list[int], now_ms: int) -> list[dict[str, Any]]:
    """The experts with their department, tags, stored capability figures and review flags, in the given order."""
    if not expert_ids:
        return []
    e, cap, d = experts, expert_capability, departments_table
    credential_count = (sa.select(sa.func.count()).where(expert_credentials.c.expert_id == e.c.id)
                        .scalar_subquery().label("credentials"))
    rows = conn.execute(
        sa.select(e, d.c.code.label("department_code"), d.c.name.label("department_name"),
                  d.c.name_zh.label("department_name_zh"), users.c.username, credential_count,
                  *[c.label(f"cap_{c.name}") for c in cap.c if c.name != "expert_id"])
        .select_from(e.join(d, d.c.id == e.c.department_id).outerjoin(cap, cap.c.expert_id == e.c.id)
                     .outerjoin(users, users.c.id == e.c.user_id))
        .where(e.c.id.in_(expert_ids))).mappings().all()
    tags: dict[int, list[str]] = {}
    for t in conn.execute(sa.select(expert_tags).where(expert_tags.c.expert_id.in_(expert_ids))
                          .order_by(expert_tags.c.display)).mappings():
        tags.setdefault(t["expert_id"], []).append(t["display"])
    by_id = {}
    for r in rows:
        figures = {c.name: r[f"cap_{c.name}"] for c in cap.c if c.name != "expert_id"}
        if figures["computed_ms"] is None:
            figures = capability.no_history(r["id"], now_ms)
        by_id[r["id"]] = _summary(r, tags.get(r["id"], []), figures, now_ms)
    return [by_id[i] for i in expert_ids if i in by_id]


def _summary(r: sa.RowMapping, tags: list[str], figures: Mapping[str, Any], now_ms: int) -> dict[str, Any]:
    state = review.ReviewState(r["created_ms"], r["profile_updated_ms"], r["reviewed_ms"],
                               figures["last_consultation_ms"], r["credentials_expire_on"], int(r["credentials"]))
    flags = review.review_flags(state, now_ms)
    return {
        "id": r["id"], "name": r["name"], "title": r["title"], "hospital": r["hospital"],
        "department_id": r["department_id"],
        "department": {"id": r["department_id"], "code": r["department_code"], "name": r["department_name"],
                       "name_zh": r["department_name_zh"]},
        "scope_of_practice": r["scope_of_practice"], "time_zone": r["time_zone"], "languages": list(r["languages"]),
        "tags": tags, "daily_cap": r["daily_cap"], "active": bool(r["active"]), "external_ref": r["external_ref"],
        "user_id": r["user_id"], "username": r["username"], "credentials_expire_on": r["credentials_expire_on"],
        "created_ms": r["created_ms"], "profile_updated_ms": r["profile_updated_ms"], "reviewed_ms": r["reviewed_ms"],
        "capability": dict(figures), "review": [{"code": f.code, "text": f.text} for f in flags],
    }


def profile(conn: sa.Connection, expert_id: int, now_ms: int) -> dict[str, Any] | None:
    """One expert in full: the summary with live capability figures (not the periodic snapshot) and
    every credential."""
    found = summaries(conn, [expert_id], now_ms)
    if not found:
        return None
    expert = found[0]
    expert["capability"] = capability.figures_of(conn, expert_id, now_ms)
    expert["credentials"] = experts_db.credentials_of(conn, expert_id)
    state = review.ReviewState(expert["created_ms"], expert["profile_updated_ms"], expert["reviewed_ms"],
                               expert["capability"]["last_consultation_ms"], expert["credentials_expire_on"],
                               len(expert["credentials"]))
    expert["review"] = [{"code": f.code, "text": f.text} for f in review.review_flags(state, now_ms)]
    return expert


# ---- JSON ---------------------------------------------------------------------------------------
def capability_json(figures: Mapping[str, Any]) -> dict[str, Any]:
    return {"consultations_done": figures["consultations_done"], "offers": figures["offers"],
            "offers_accepted": figures["offers_accepted"], "acceptance_rate": capability.acceptance_rate(figures),
            "median_response_s": figures["median_response_s"], "p90_response_s": figures["p90_response_s"],
            "ratings": figures["ratings"], "rating_avg": figures["rating_avg"],
            "adoption_answers": figures["adoption_answers"], "adoption_rate": capability.adoption_rate(figures),
            "last_consultation": iso_from_ms(figures["last_consultation_ms"]),
            "computed": iso_from_ms(figures["computed_ms"])}


def credential_json(c: Mapping[str, Any], now_ms: int) -> dict[str, Any]:
    expires = c["expires_on"]
    return {"id": c["id"], "kind": c["kind"], "identifier": c["identifier"], "issuer": c["issuer"],
            "expires_on": expires.isoformat() if expires else None,
            "valid": expires is None or expires >= review.utc_day(now_ms), "updated": iso_from_ms(c["updated_ms"])}


def expert_json(expert: Mapping[str, Any], *, full: bool, now_ms: int) -> dict[str, Any]:
    """The API's view of an expert. `full`: with credentials (profiles only), review flags, account link."""
    out: dict[str, Any] = {
        "id": expert["id"], "name": expert["name"], "title": expert["title"], "hospital": expert["hospital"],
        "department": expert["department"], "scope_of_practice": expert["scope_of_practice"],
        "time_zone": expert["time_zone"], "languages": expert["languages"], "tags": expert["tags"],
        "daily_cap": expert["daily_cap"], "active": expert["active"],
        "capability": capability_json(expert["capability"]),
    }
    if full:
        expires = expert["credentials_expire_on"]
        out.update(external_ref=expert["external_ref"], username=expert["username"],
                   credentials_expire_on=expires.isoformat() if expires else None,
                   created=iso_from_ms(expert["created_ms"]), profile_updated=iso_from_ms(expert["profile_updated_ms"]),
                   reviewed=iso_from_ms(expert["reviewed_ms"]), review=expert["review"])
        if "credentials" in expert:
            out["credentials"] = [credential_json(c, now_ms) for c in expert["credentials"]]
    return out
