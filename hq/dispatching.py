"""Dispatch in the database: ranks the experts (`hq.experts.candidates` with availability from
`hq.scheduling.available_now` and today's load from the consultations table, then `hq.matching.rank`), feeds the
pure state machine `hq.dispatch`, and applies its decisions: offers, withdrawals, escalations, the accept.

Every write re-checks the state its decision was made on (status, round, a pending offer), so concurrent accepts,
HQ workers and the timeout sweeper never both win; the loser gets `DispatchRefused` or `Conflict`. Live notices
and downlink notices go through the caller's `Effects`, after its commit. No clock: `now` is passed in.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import sqlalchemy as sa

from gateway import consultation_wire as cw
from hq import audit, dispatch, downlink, experts, id_sets, matching, scheduling
from hq.after_commit import Effects
from hq.clock import iso_from_ms
from hq.config import ConsultationsSection
from hq.consultation_views import summary
from hq.models import consultations, dispatch_offers, users
from hq.models import experts as experts_table

log = logging.getLogger(__name__)

OPEN_STATUSES = tuple(str(p) for p in dispatch.OPEN)
COORDINATOR_ROLES = ("coordinator",)
SWEEP_LIMIT = 50


class DispatchRefused(Exception):
    """An accept or decline that cannot be (taken by someone else, not offered, expired); for the expert."""


class Conflict(Exception):
    """The consultation changed since it was read (another worker, an accept): the decision was not applied."""


def policy(config: ConsultationsSection, kind: str) -> dispatch.Policy:
    return dispatch.Policy(config.offers_per_round, int(config.timeout_s(kind) * 1000), config.max_rounds)


def phase_of(status: str) -> dispatch.Phase:
    try:
        return dispatch.Phase(status)
    except ValueError:
        return dispatch.Phase.ACCEPTED  # scheduled, in session, reported, closed: not open for offers


def load_state(conn: sa.Connection, row: Mapping[str, Any]) -> dispatch.State:
    d = dispatch_offers
    offers = tuple(dispatch.Offer(int(o.expert_id), int(o.round), int(o.offered_ms), dispatch.Outcome(o.outcome))
                   for o in conn.execute(sa.select(d.c.expert_id, d.c.round, d.c.offered_ms, d.c.outcome)
                                         .where(d.c.consultation_id == row["id"]).order_by(d.c.id)))
    return dispatch.State(phase_of(row["status"]), int(row["escalation_round"]), row["next_escalation_ms"], offers,
                          row["expert_id"])


# ---- who: ranking ---------------------------------------------------------------------------------
def day_start_ms(now: int, zone: str) -> int:
    """Midnight of `now`'s day in the expert's zone (an unknown zone counts as UTC), in Unix ms."""
    try:
        tz: ZoneInfo | Any = ZoneInfo(zone)
    except (ZoneInfoNotFoundError, ValueError):
        tz = UTC
    local = datetime.fromtimestamp(now / 1000, tz)
    return int(local.replace(hour=0, minute=0, second=0, microsecond=0).timestamp() * 1000)


def load_today(conn: sa.Connection, expert_ids: Sequence[int], now: int) -> dict[int, int]:
    """Consultations each expert took since midnight of their own day (cancelled ones do not count).

    One query for all the experts: each of the directory's time zones has its own midnight (worked out here,
    once per zone), picked per row by the expert's zone; the ids go in as one parameter (`hq.id_sets`)."""
    if not expert_ids:
        return {}
    e, c = experts_table, consultations
    starts = {zone: day_start_ms(now, zone) for zone in experts.time_zones(conn)}
    utc_start = day_start_ms(now, "UTC")  # a zone added since the line above: counted as UTC, like an unknown one
    since = min([utc_start, *starts.values()])  # the index range; the CASE below is the exact bound
    midnight = sa.case(starts, value=e.c.time_zone, else_=utc_start) \
        if starts else sa.literal(utc_start)
    return dict(conn.execute(
        sa.select(c.c.expert_id, sa.func.count()).join(e, e.c.id == c.c.expert_id)
        .where(id_sets.among(conn.dialect, c.c.expert_id, expert_ids), c.c.accepted_ms >= since,
               c.c.accepted_ms >= midnight, c.c.status != "cancelled")
        .group_by(c.c.expert_id)).all())


def rank(conn: sa.Connection, row: Mapping[str, Any], state: dispatch.State, now: int,
         limit: int | None = None) -> list[matching.Ranked]:
    """The experts to offer the consultation to, best first, excluding those offered before (the best `limit`:
    a round offers it to that many; ranking thousands of candidates needs no full sort). A consultation asked of
    one expert goes to that expert alone first (if eligible), to the matching's choice after."""
    exclude = frozenset(state.offered)
    request = matching.MatchRequest(row["department_id"], frozenset(row["tags"] or ()), row["language"], exclude)
    found = experts.candidates(
        conn, request, now_ms=now, available_now=lambda ids: scheduling.available_now(conn, ids, now),
        load_today=lambda ids: load_today(conn, ids, now))
    wanted = row["requested_expert_id"]
    if wanted is not None and state.round == 0:
        chosen = matching.rank(request, [c for c in found if c.expert_id == wanted], now_ms=now)
        if chosen:
            return chosen
    return matching.rank(request, found, now_ms=now, limit=limit)


def _users_of(conn: sa.Connection, expert_ids: Iterable[int]) -> dict[int, int]:
    ids = sorted(set(expert_ids))
    if not ids:
        return {}
    e = experts_table
    return {int(a): int(b) for a, b in conn.execute(
        sa.select(e.c.id, e.c.user_id).where(e.c.id.in_(ids), e.c.user_id.is_not(None)))}


def expert_user(conn: sa.Connection, expert_id: int | None) -> int | None:
    return None if expert_id is None else _users_of(conn, [expert_id]).get(expert_id)


def coordinator_user_ids(conn: sa.Connection, config: ConsultationsSection) -> list[int]:
    u = users
    q = sa.select(u.c.id).where(u.c.active.is_(True))
    q = q.where(u.c.username.in_(config.on_call_coordinators)) if config.on_call_coordinators else \
        q.where(u.c.role.in_(COORDINATOR_ROLES))
    return [int(i) for i in conn.execute(q.order_by(u.c.id)).scalars()]


# ---- telling people -------------------------------------------------------------------------------
def notify_clinic(conn: sa.Connection, row: Mapping[str, Any], kind: str, body: dict[str, Any],
                  effects: Effects) -> None:
    """A notice to the clinic's gateway: the one the consultation came from, else every gateway of the clinic."""
    body = {"public_id": row["public_id"], **body}
    sent = [downlink.send(conn, row["gateway_id"], kind, body)] if row["gateway_id"] else \
        downlink.send_to_clinic(conn, row["clinic_id"], kind, body)
    if sent:
        effects.downlink_queued = True


def notify_watchers(conn: sa.Connection, row: Mapping[str, Any], effects: Effects, now: int) -> dict[str, Any]:
    """The consultation's new state to the consoles watching it: chain-wide staff, the clinic's staff, the
    expert who took it. Returns the summary sent."""
    view = summary(conn, row, now)
    message = {"type": "consultation.update", "consultation": view}
    effects.notify(message, roles=("coordinator", "department_head"))
    effects.notify(message, roles=("clinic_staff",), clinic_id=row["clinic_id"])
    d = dispatch_offers
    involved = [int(e) for e in conn.execute(sa.select(d.c.expert_id).where(
        d.c.consultation_id == row["id"], d.c.outcome == "pending")).scalars()]
    if row["expert_id"] is not None:
        involved.append(row["expert_id"])
    user_ids = sorted(set(_users_of(conn, involved).values()))
    if user_ids:
        effects.notify(message, user_ids=user_ids)
    return view


def _status_text(row: Mapping[str, Any], pending: int) -> str:
    if row["status"] == "escalated":
        return f"No expert has accepted yet: round {row['escalation_round']}, offered to {pending}, coordinator told"
    if row["status"] == "requested":
        return "No expert could be offered it yet: the coordinator was told"
    return f"Offered to {pending} expert(s)"


# ---- applying decisions -------------------------------------------------------------------------
def _reload(conn: sa.Connection, consultation_id: int) -> dict[str, Any]:
    return dict(conn.execute(sa.select(consultations).where(consultations.c.id == consultation_id)).mappings().one())


def apply(conn: sa.Connection, row: Mapping[str, Any], before: dispatch.State, after: dispatch.State,
          decisions: Sequence[dispatch.Decision], ranked: Sequence[matching.Ranked], config: ConsultationsSection,
          effects: Effects, now: int, actor: audit.Labelled | str = "system") -> dict[str, Any]:
    """Write `decisions` (made on `before`, read from `row`) in the caller's transaction; returns the new row.
    Raises Conflict when the consultation changed meanwhile, DispatchRefused for a refused accept/decline."""
    for decision in decisions:
        if isinstance(decision, dispatch.Refused):
            raise DispatchRefused(decision.reason)
    c, d = consultations, dispatch_offers
    guard = [c.c.id == row["id"], c.c.status == row["status"], c.c.escalation_round == before.round]
    taken = next((x.expert_id for x in decisions if isinstance(x, dispatch.Taken)), None)
    values: dict[str, Any] = {"status": str(after.phase), "escalation_round": after.round,
                              "next_escalation_ms": after.deadline_ms}
    if taken is not None:
        guard.append(c.c.expert_id.is_(None))
        values.update(expert_id=taken, accepted_ms=now)
    if any(isinstance(x, dispatch.NotifyCoordinators) for x in decisions):
        values["coordinators_notified_ms"] = now
    if conn.execute(c.update().where(*guard).values(**values)).rowcount != 1:
        raise Conflict(f"consultation {row['public_id']} changed meanwhile")
    involved = {o.expert_id for o in after.offers}
    user_of = _users_of(conn, involved)
    by_id = {r.expert_id: r for r in ranked}
    new = _reload(conn, row["id"])
    view = summary(conn, new, now)
    for decision in decisions:
        if isinstance(decision, dispatch.OfferTo):
            for expert_id in decision.expert_ids:
                r = by_id.get(expert_id)
                reasons = [str(x) for x in r.reasons] if r is not None else ["asked for by the clinic"]
                conn.execute(d.insert().values(consultation_id=row["id"], expert_id=expert_id, round=decision.round,
                                               offered_ms=now, outcome="pending",
                                               score=0.0 if r is None else round(r.score, 3), reasons=reasons))
                user_id = user_of.get(expert_id)
                if user_id is not None:
                    effects.notify({"type": "consultation.offer", "consultation": view, "offer": {
                        "round": decision.round, "offered": iso_from_ms(now),
                        "expires": iso_from_ms(after.deadline_ms), "reasons": reasons,
                        "score": None if r is None else round(r.score, 2)}}, user_ids=[user_id])
            audit.record(conn, actor, "consultation.offer", "consultation", row["public_id"],
                         clinic_id=row["clinic_id"], detail={"round": decision.round,
                                                              "experts": list(decision.expert_ids)})
        elif isinstance(decision, dispatch.Expire | dispatch.Withdraw):
            outcome = "expired" if isinstance(decision, dispatch.Expire) else "withdrawn"
            conn.execute(d.update().where(d.c.consultation_id == row["id"], d.c.expert_id.in_(decision.expert_ids),
                                          d.c.outcome == "pending").values(outcome=outcome, responded_ms=now))
            why = f"accepted by {view['expert']}" if taken is not None and view["expert"] else \
                "passed to the next round" if outcome == "expired" else "withdrawn"
            closed = [user_of[e] for e in decision.expert_ids if e in user_of]
            if closed:
                effects.notify({"type": "consultation.offer_closed", "public_id": row["public_id"],
                                "outcome": outcome, "reason": why}, user_ids=closed)
        elif isinstance(decision, dispatch.Taken):
            accepted = conn.execute(d.update().where(d.c.consultation_id == row["id"], d.c.expert_id == taken,
                                                     d.c.outcome == "pending")
                                    .values(outcome="accepted", responded_ms=now))
            if accepted.rowcount != 1:
                raise Conflict(f"the offer of consultation {row['public_id']} to expert {taken} is not open")
            audit.record(conn, actor, "consultation.accept", "consultation", row["public_id"],
                         clinic_id=row["clinic_id"], detail={"expert_id": taken})
            notify_clinic(conn, new, cw.NOTICE_ACCEPTED, {
                "expert_name": view["expert"], "expert_title": view["expert_title"],
                "hospital": view["expert_hospital"], "accepted_ms": now}, effects)
        elif isinstance(decision, dispatch.NotifyCoordinators):
            coordinators = coordinator_user_ids(conn, config)
            effects.notify({"type": "consultation.escalated", "consultation": view, "round": decision.round,
                            "exhausted": decision.exhausted}, user_ids=coordinators)
            audit.record(conn, actor, "consultation.escalate", "consultation", row["public_id"],
                         clinic_id=row["clinic_id"], detail={"round": decision.round, "exhausted": decision.exhausted,
                                                              "coordinators": coordinators})
            if not coordinators:
                log.warning("consultation %s escalated but no on-call coordinator account is active",
                            row["public_id"])
    if taken is None and any(isinstance(x, dispatch.OfferTo | dispatch.NotifyCoordinators) for x in decisions):
        pending = len(after.pending)
        notify_clinic(conn, new, cw.NOTICE_UPDATE, {"status": new["status"], "text": _status_text(new, pending),
                                                    "kind": new["kind"], "form_due_ms": new["form_due_ms"],
                                                    "offered": pending}, effects)
    if decisions:
        notify_watchers(conn, new, effects, now)
    return new


# ---- the operations -----------------------------------------------------------------------------
def start(conn: sa.Connection, row: Mapping[str, Any], config: ConsultationsSection, effects: Effects,
          now: int) -> dict[str, Any]:
    """The first round of a new (requested) consultation."""
    before = load_state(conn, row)
    ranked = rank(conn, row, before, now, config.offers_per_round)
    after, decisions = dispatch.start(before, [r.expert_id for r in ranked], policy(config, row["kind"]), now)
    return apply(conn, row, before, after, decisions, ranked, config, effects, now)


def accept(conn: sa.Connection, row: Mapping[str, Any], expert_id: int, config: ConsultationsSection,
           effects: Effects, now: int, actor: audit.Labelled | str) -> dict[str, Any]:
    before = load_state(conn, row)
    after, decisions = dispatch.accept(before, expert_id, now)
    try:
        return apply(conn, row, before, after, decisions, (), config, effects, now, actor)
    except Conflict:
        # Someone else's accept (or an escalation) committed first: say what happened to this one.
        again = _reload(conn, row["id"])
        reasons = [x for x in dispatch.accept(load_state(conn, again), expert_id, now)[1]
                   if isinstance(x, dispatch.Refused)]
        raise DispatchRefused(reasons[0].reason if reasons else "the consultation changed; try again") from None


def decline(conn: sa.Connection, row: Mapping[str, Any], expert_id: int, config: ConsultationsSection,
            effects: Effects, now: int, actor: audit.Labelled | str) -> dict[str, Any]:
    before = load_state(conn, row)
    ranked = rank(conn, row, before, now, config.offers_per_round)
    after, decisions = dispatch.decline(before, expert_id, [r.expert_id for r in ranked], policy(config, row["kind"]),
                                        now)
    if not any(isinstance(x, dispatch.Refused) for x in decisions):
        conn.execute(dispatch_offers.update().where(
            dispatch_offers.c.consultation_id == row["id"], dispatch_offers.c.expert_id == expert_id,
            dispatch_offers.c.outcome == "pending").values(outcome="declined", responded_ms=now))
        audit.record(conn, actor, "consultation.decline", "consultation", row["public_id"],
                     clinic_id=row["clinic_id"], detail={"expert_id": expert_id})
        if not decisions:
            return dict(row)
    return apply(conn, row, before, after, decisions, ranked, config, effects, now, actor)


def cancel(conn: sa.Connection, row: Mapping[str, Any], config: ConsultationsSection, effects: Effects,
           now: int, actor: audit.Labelled | str) -> dict[str, Any]:
    before = load_state(conn, row)
    after, decisions = dispatch.cancel(before)
    if decisions:
        return apply(conn, row, before, after, decisions, (), config, effects, now, actor)
    return dict(row)


def due(conn: sa.Connection, now: int, limit: int = SWEEP_LIMIT) -> list[dict[str, Any]]:
    c = consultations
    return [dict(r) for r in conn.execute(
        sa.select(c).where(c.c.next_escalation_ms <= now, c.c.status.in_(OPEN_STATUSES))
        .order_by(c.c.next_escalation_ms).limit(limit)).mappings()]


def escalate_due(conn: sa.Connection, config: ConsultationsSection, effects: Effects, now: int) -> int:
    """Escalate every open consultation whose round timed out; returns how many escalated. Each in a savepoint:
    one that changed meanwhile (accepted, escalated by another worker) is skipped."""
    done = 0
    for row in due(conn, now):
        before = load_state(conn, row)
        ranked = rank(conn, row, before, now, config.offers_per_round)
        after, decisions = dispatch.tick(before, [r.expert_id for r in ranked], policy(config, row["kind"]), now)
        if not decisions:
            continue
        try:
            with conn.begin_nested():
                apply(conn, row, before, after, decisions, ranked, config, effects, now)
        except Conflict:
            continue
        done += 1
    return done


def next_deadline(conn: sa.Connection) -> int | None:
    c = consultations
    value = conn.execute(sa.select(sa.func.min(c.c.next_escalation_ms))
                         .where(c.c.status.in_(OPEN_STATUSES), c.c.next_escalation_ms.is_not(None))).scalar()
    return None if value is None else int(value)
