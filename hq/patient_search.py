"""Patient search: every term of a query must match some search key of the patient by prefix (a name word in
any script, a whole name, a national id, a clinic record number), within what the asker may see.

Each term is one range scan of `patient_search_keys` ([term, successor(term)) in code point order): the most
selective term drives the scan in key order with an early LIMIT, the others are index probes per patient.
bench/records.py measures it. The keys themselves are written by `hq.records.reindex`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa

from hq import patient_matching as rules
from hq.auth import Actor
from hq.models import clinics, patient_identifiers, patient_search_keys, patients
from hq.records import visible_clause

SELECTIVITY_PROBE = 500  # keys counted per term (at most) to pick the driving term
SCAN_FACTOR = 4  # a patient has several keys in one prefix range (zhang, zhangwei): read more, keep distinct
KIND_RANK = {"nid": 0, "mrn": 1, "name": 2}


@dataclass(frozen=True, slots=True)
class Hit:
    patient_id: int
    matched: str  # the kind of key the driving term met: nid | mrn | name


def _term_range(k: sa.FromClause, term: str) -> sa.ColumnElement[bool]:
    return sa.and_(k.c.key >= term, k.c.key < rules.successor(term))


def _count_upto(conn: sa.Connection, term: str, limit: int) -> int:
    k = patient_search_keys
    inner = sa.select(k.c.patient_id).where(_term_range(k, term)).limit(limit).subquery()
    return int(conn.execute(sa.select(sa.func.count()).select_from(inner)).scalar_one())


def find(conn: sa.Connection, query: str, *, actor: Actor | None = None, limit: int = 50) -> list[Hit]:
    """Patients matching every term of `query`, best keys first (exact before longer, identifiers first among
    equal keys); `actor` limits the hits to patients they may see. An empty query finds nothing."""
    terms = rules.query_terms(query)
    if not terms:
        return []
    if len(terms) > 1:
        # The term with the fewest keys drives; the count stops at SELECTIVITY_PROBE, so this costs little.
        terms.sort(key=lambda t: _count_upto(conn, t, SELECTIVITY_PROBE))
    driver, *others = terms
    k1 = patient_search_keys.alias("k1")
    q = sa.select(k1.c.patient_id, k1.c.kind).where(_term_range(k1, driver))
    for i, term in enumerate(others):
        k = patient_search_keys.alias(f"k{i + 2}")
        q = q.where(sa.exists().where(k.c.patient_id == k1.c.patient_id, _term_range(k, term)))
    if actor is not None:
        clause = visible_clause(actor, k1.c.patient_id)
        if clause is not None:
            q = q.where(clause)
    q = q.order_by(k1.c.key, k1.c.patient_id).limit(limit * SCAN_FACTOR)
    seen: dict[int, str] = {}
    for pid, kind in conn.execute(q):
        if int(pid) not in seen or KIND_RANK[kind] < KIND_RANK[seen[int(pid)]]:
            seen[int(pid)] = kind
    hits = [Hit(pid, kind) for pid, kind in seen.items()][:limit]
    return sorted(hits, key=lambda h: KIND_RANK[h.matched]) if len(hits) > 1 else hits


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
