"""Patient search: every term of a query must match some search key of the patient by prefix (a name word in
any script, a whole name, a national id, a clinic record number), within what the asker may see.

Each term is one range scan of `patient_search_keys` ([term, successor(term)) in code point order) in the asker's
scope (the chain, or a clinic for its staff): the most selective term drives the scan in key order with an early
LIMIT and the others are index probes per patient; several words are also looked up as a phrase, for ranking.
bench/records.py measures it. The keys themselves are written by `hq.records.reindex`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa

from hq import patient_matching as rules
from hq.auth import Actor, Role
from hq.models import clinics, patient_identifiers, patient_search_keys, patients
from hq.records import CHAIN_SCOPE, visible_clause

SELECTIVITY_PROBE = 2000  # keys counted per term (at most) to pick the driving term
SCAN_FACTOR = 4  # a patient has several keys in one prefix range (zhang, zhangwei): read more, keep distinct
KIND_RANK = {"nid": 0, "mrn": 1, "name": 2}


@dataclass(frozen=True, slots=True)
class Hit:
    patient_id: int
    matched: str  # the kind of key the driving term met: nid | mrn | name


def _term_range(k: sa.FromClause, term: str) -> sa.ColumnElement[bool]:
    return sa.and_(k.c.key >= term, k.c.key < rules.successor(term))


def _scope(actor: Actor | None) -> tuple[str, sa.ColumnElement[bool] | None, sa.FromClause]:
    """Which keys to scan and what else to check: clinic staff scan their clinic's keys (exactly the patients
    they may see); others the chain's, experts with their consultations' rule on top."""
    k1 = patient_search_keys.alias("k1")
    if actor is not None and actor.role is Role.CLINIC_STAFF and actor.clinic_id is not None:
        return actor.clinic_id, None, k1
    clause = None if actor is None else visible_clause(actor, k1.c.patient_id)
    return CHAIN_SCOPE, clause, k1


def _count_upto(conn: sa.Connection, scope: str, term: str, limit: int) -> int:
    k = patient_search_keys
    inner = sa.select(k.c.patient_id).where(k.c.scope == scope, _term_range(k, term)).limit(limit).subquery()
    return int(conn.execute(sa.select(sa.func.count()).select_from(inner)).scalar_one())


def _collect(rows: Any, seen: dict[int, str]) -> None:
    for pid, kind in rows:
        if int(pid) not in seen or KIND_RANK[kind] < KIND_RANK[seen[int(pid)]]:
            seen[int(pid)] = kind


def find(conn: sa.Connection, query: str, *, actor: Actor | None = None, limit: int = 50) -> list[Hit]:
    """Patients matching every term of `query` (each a prefix of some key), best first: an identifier, then
    the words as a phrase ("zhang wei": a name starting "zhangwei" or "weizhang"), then exact keys before
    longer ones. `actor` limits the hits to patients they may see. An empty query finds nothing."""
    terms = rules.query_terms(query)
    if not terms:
        return []
    if conn.dialect.name == "postgresql":
        # psycopg prepares a statement run five times, and PostgreSQL then may plan it once for any prefix: a
        # generic plan that scans the second term's whole range for every candidate (5 s instead of 5 ms for
        # two common words). Plan each search for its own terms.
        conn.exec_driver_sql("SET LOCAL plan_cache_mode = force_custom_plan")
    scope, clause, k1 = _scope(actor)
    phrase_hits: dict[int, str] = {}
    words = rules.tokens(query)
    if len(words) > 1:
        phrases = {"".join(words)[:rules.KEY_MAX]}
        if len(words) == 2:
            phrases.add("".join(reversed(words))[:rules.KEY_MAX])
        for phrase in sorted(phrases):
            q = sa.select(k1.c.patient_id, k1.c.kind).where(k1.c.scope == scope, _term_range(k1, phrase))
            if clause is not None:
                q = q.where(clause)
            _collect(conn.execute(q.order_by(k1.c.key, k1.c.patient_id).limit(limit * SCAN_FACTOR)), phrase_hits)
        if len(phrase_hits) >= limit:
            # Phrase hits rank first and are every-word hits too: they fill the list, nothing could displace them.
            return sorted((Hit(pid, kind) for pid, kind in phrase_hits.items()),
                          key=lambda h: KIND_RANK[h.matched])[:limit]
        # The term with the fewest keys drives; the count stops at SELECTIVITY_PROBE, so this costs little.
        terms.sort(key=lambda t: _count_upto(conn, scope, t, SELECTIVITY_PROBE))
    driver, *others = terms
    q = sa.select(k1.c.patient_id, k1.c.kind).where(k1.c.scope == scope, _term_range(k1, driver))
    for i, term in enumerate(others):
        k = patient_search_keys.alias(f"k{i + 2}")
        q = q.where(sa.exists().where(k.c.patient_id == k1.c.patient_id, k.c.scope == scope, _term_range(k, term)))
    if clause is not None:
        q = q.where(clause)
    seen: dict[int, str] = {}
    _collect(conn.execute(q.order_by(k1.c.key, k1.c.patient_id).limit(limit * SCAN_FACTOR)), seen)
    first = [Hit(pid, kind) for pid, kind in seen.items() if pid in phrase_hits]
    rest = [Hit(pid, kind) for pid, kind in seen.items() if pid not in phrase_hits]
    # A phrase match that is not an every-word match (a one-word name typed with a space) still counts.
    first += [Hit(pid, kind) for pid, kind in phrase_hits.items() if pid not in seen]
    ranked = sorted(first, key=lambda h: KIND_RANK[h.matched]) + sorted(rest, key=lambda h: KIND_RANK[h.matched])
    return ranked[:limit]


def describe(conn: sa.Connection, hits: list[Hit]) -> list[dict[str, Any]]:
    """The hits as rows for a result list: demographics and record numbers, in the hits' order."""
    if not hits:
        return []
    ids = [h.patient_id for h in hits]
    rows = {int(r["id"]): dict(r) for r in conn.execute(sa.select(patients).where(patients.c.id.in_(ids)))
            .mappings()}
    numbers: dict[int, list[dict[str, str]]] = {}
    q = (sa.select(patient_identifiers.c.patient_id, patient_identifiers.c.clinic_id, patient_identifiers.c.mrn,
                   clinics.c.name).join(clinics, clinics.c.id == patient_identifiers.c.clinic_id)
         .where(patient_identifiers.c.patient_id.in_(ids)).order_by(patient_identifiers.c.id))
    for pid, clinic_id, mrn, clinic_name in conn.execute(q):
        numbers.setdefault(int(pid), []).append({"clinic_id": clinic_id, "clinic": clinic_name, "mrn": mrn})
    return [{**rows[h.patient_id], "identifiers": numbers.get(h.patient_id, []), "matched": h.matched}
            for h in hits if h.patient_id in rows]
