"""Reads and writes of calls in HQ's database: which gateway serves a consultation, the participants of its
call (with their resume tokens), quality samples and the alerts raised from them.

Synchronous SQLAlchemy Core on a connection the caller opened (in a worker thread); the rules are in
`hq.call_quality`, the relay in `hq.calls`.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa

from gateway.wire import CallQuality
from hq.call_quality import AlertKind, Finding, Thresholds, changes
from hq.models import (
    call_alerts,
    call_participants,
    call_quality_samples,
    consultations,
    dispatch_offers,
    gateways,
)
from hq.store import dialect_insert

ALERTS_SHOWN = 50


@dataclass(frozen=True, slots=True)
class ConsultationRef:
    public_id: str
    clinic_id: str
    gateway_id: str | None  # None: the clinic has no gateway HQ knows
    gateway_online: bool
    patient_id: int | None


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def find_consultation(conn: sa.Connection, public_id: str) -> ConsultationRef | None:
    """The consultation and the gateway its call runs on: the one that made it, else the clinic's gateway
    heard from last."""
    row = conn.execute(sa.select(consultations.c.clinic_id, consultations.c.gateway_id, consultations.c.patient_id)
                       .where(consultations.c.public_id == public_id)).first()
    if row is None:
        return None
    query = sa.select(gateways.c.id, gateways.c.state)
    if row.gateway_id is not None:
        query = query.where(gateways.c.id == row.gateway_id)
    else:
        query = query.where(gateways.c.clinic_id == row.clinic_id).order_by(
            (gateways.c.state == "online").desc(), gateways.c.last_contact_ms.desc().nulls_last())
    gateway = conn.execute(query.limit(1)).first()
    gateway_id = row.gateway_id or (gateway.id if gateway else None)
    return ConsultationRef(public_id, row.clinic_id, gateway_id, bool(gateway and gateway.state == "online"),
                           row.patient_id)


def expert_assigned(conn: sa.Connection, public_id: str, expert_id: int) -> bool:
    """The consultation is this expert's: they took it, it was asked of them, or it is offered to them."""
    row = conn.execute(sa.select(consultations.c.id, consultations.c.expert_id, consultations.c.requested_expert_id)
                       .where(consultations.c.public_id == public_id)).first()
    if row is None:
        return False
    if expert_id in (row.expert_id, row.requested_expert_id):
        return True
    offered = conn.execute(sa.select(dispatch_offers.c.id).where(
        dispatch_offers.c.consultation_id == row.id, dispatch_offers.c.expert_id == expert_id,
        dispatch_offers.c.outcome.in_(("pending", "accepted")))).first()
    return offered is not None


# ---- participants ------------------------------------------------------------------------
def add_participant(conn: sa.Connection, *, peer_id: str, consultation: ConsultationRef, user_id: int | None,
                    name: str, role: str, token: str, now_ms: int) -> None:
    assert consultation.gateway_id is not None
    conn.execute(call_participants.insert().values(
        peer_id=peer_id, consultation_public_id=consultation.public_id, gateway_id=consultation.gateway_id,
        user_id=user_id, name=name, role=role, token_hash=token_hash(token), joined_ms=now_ms, last_seen_ms=now_ms))


def resume_participant(conn: sa.Connection, *, peer_id: str, token: str, user_id: int | None, public_id: str,
                       now_ms: int, grace_ms: int) -> dict[str, Any] | None:
    """The participant's row if `token` is theirs, they are the same user, for this consultation, and they have
    not left (or left less than `grace_ms` ago: a dropped socket is not a goodbye); marks them seen."""
    row = conn.execute(sa.select(call_participants).where(call_participants.c.peer_id == peer_id)).mappings().first()
    if (row is None or row["consultation_public_id"] != public_id or row["user_id"] != user_id
            or not hmac.compare_digest(row["token_hash"], token_hash(token))
            or (row["left_ms"] is not None and now_ms - row["left_ms"] > grace_ms)):
        return None
    conn.execute(call_participants.update().where(call_participants.c.peer_id == peer_id)
                 .values(last_seen_ms=now_ms, left_ms=None))
    return dict(row)


def touch_participant(conn: sa.Connection, peer_id: str, now_ms: int) -> None:
    conn.execute(call_participants.update().where(call_participants.c.peer_id == peer_id)
                 .values(last_seen_ms=now_ms))


def leave_participant(conn: sa.Connection, peer_id: str, now_ms: int, *, unless_seen_after_ms: int | None = None
                      ) -> bool:
    """Mark the participant gone; with `unless_seen_after_ms`, not if their socket came back since (on this or
    another HQ worker). True if they were marked."""
    query = call_participants.update().where(call_participants.c.peer_id == peer_id,
                                             call_participants.c.left_ms.is_(None))
    if unless_seen_after_ms is not None:
        query = query.where(call_participants.c.last_seen_ms <= unless_seen_after_ms)
    return bool(conn.execute(query.values(left_ms=now_ms)).rowcount)


def participants(conn: sa.Connection, public_id: str) -> list[dict[str, Any]]:
    rows = conn.execute(sa.select(call_participants).where(call_participants.c.consultation_public_id == public_id)
                        .order_by(call_participants.c.joined_ms)).mappings().all()
    return [dict(r) for r in rows]


# ---- quality -----------------------------------------------------------------------------
@dataclass(slots=True)
class QualityResult:
    stored: int
    opened: list[dict[str, Any]]
    closed: list[dict[str, Any]]


def _open_key(public_id: str, peer_id: str, stream: str, kind: str) -> str:
    return f"{public_id}|{peer_id}|{stream}|{kind}"


def store_quality(conn: sa.Connection, gateway_id: str, quality: CallQuality, limits: Thresholds,
                  now_ms: int) -> QualityResult:
    """Store a sample (idempotently: every HQ worker gets it) and open or close alerts from it."""
    rows = [{"consultation_public_id": quality.consultation_id, "gateway_id": gateway_id, "peer_id": p.peer_id,
             "stream": s.stream, "kind": s.kind, "direction": str(s.direction), "at_ms": quality.time_ms,
             "rtt_ms": s.rtt_ms, "loss_pct": s.loss_pct, "jitter_ms": s.jitter_ms, "fps": s.fps, "kbps": s.kbps,
             "tier": s.tier} for p in quality.peers for s in p.streams]
    insert = dialect_insert(conn)
    stored = 0
    if rows:
        stored = conn.execute(insert(call_quality_samples).on_conflict_do_nothing(
            index_elements=["gateway_id", "peer_id", "stream", "at_ms"]), rows).rowcount
    result = QualityResult(max(0, stored), [], [])
    for peer in quality.peers:
        open_rows = conn.execute(sa.select(call_alerts.c.id, call_alerts.c.stream, call_alerts.c.kind).where(
            call_alerts.c.consultation_public_id == quality.consultation_id, call_alerts.c.peer_id == peer.peer_id,
            call_alerts.c.ended_ms.is_(None))).all()
        to_open, to_close = changes(peer, [(r.stream, AlertKind(r.kind)) for r in open_rows], limits)
        for finding in to_open:
            result.opened += _open_alert(conn, insert, quality.consultation_id, gateway_id, peer.peer_id, finding,
                                         quality.time_ms)
        for stream, kind in to_close:
            closed = conn.execute(call_alerts.update().where(
                call_alerts.c.open_key == _open_key(quality.consultation_id, peer.peer_id, stream, kind))
                .values(ended_ms=quality.time_ms, open_key=None).returning(*call_alerts.c)).mappings().all()
            result.closed += [dict(r) for r in closed]
    return result


def _open_alert(conn: sa.Connection, insert: Any, public_id: str, gateway_id: str, peer_id: str, finding: Finding,
                at_ms: int) -> list[dict[str, Any]]:
    key = _open_key(public_id, peer_id, finding.stream, finding.kind)
    opened = conn.execute(insert(call_alerts).on_conflict_do_nothing(index_elements=["open_key"]).values(
        consultation_public_id=public_id, gateway_id=gateway_id, peer_id=peer_id, stream=finding.stream,
        kind=str(finding.kind), value=finding.value, threshold=finding.threshold, started_ms=at_ms, open_key=key)
        .returning(*call_alerts.c)).mappings().all()
    return [dict(r) for r in opened]


def alerts(conn: sa.Connection, public_id: str, *, open_only: bool = False) -> list[dict[str, Any]]:
    query = sa.select(call_alerts).where(call_alerts.c.consultation_public_id == public_id)
    if open_only:
        query = query.where(call_alerts.c.ended_ms.is_(None))
    rows = conn.execute(query.order_by(call_alerts.c.started_ms.desc()).limit(ALERTS_SHOWN)).mappings().all()
    return [dict(r) for r in rows]


def open_alert_counts(conn: sa.Connection, gateway_ids: Iterable[str] | None = None) -> dict[str, int]:
    """Open call-quality alerts per gateway (for the fleet view)."""
    query = sa.select(call_alerts.c.gateway_id, sa.func.count()).where(call_alerts.c.ended_ms.is_(None))
    if gateway_ids is not None:
        query = query.where(call_alerts.c.gateway_id.in_(list(gateway_ids)))
    return {gw: int(n) for gw, n in conn.execute(query.group_by(call_alerts.c.gateway_id))}


def latest_samples(conn: sa.Connection, public_id: str) -> list[dict[str, Any]]:
    """The newest sample of each participant's streams."""
    newest = sa.select(sa.func.max(call_quality_samples.c.at_ms)).where(
        call_quality_samples.c.consultation_public_id == public_id).scalar_subquery()
    rows = conn.execute(sa.select(call_quality_samples).where(
        call_quality_samples.c.consultation_public_id == public_id, call_quality_samples.c.at_ms == newest)
        .order_by(call_quality_samples.c.peer_id, call_quality_samples.c.stream)).mappings().all()
    return [dict(r) for r in rows]


def delete_samples_before(conn: sa.Connection, before_ms: int) -> int:
    return int(conn.execute(call_quality_samples.delete().where(call_quality_samples.c.at_ms < before_ms)).rowcount)
