"""The dispatch state machine of a consultation nobody has taken yet: offers go to the top N ranked experts at
once, the first to accept takes it and the others are withdrawn; a round unanswered after T (or declined by all)
escalates to the next N and to the on-call coordinators.

Pure: state and time in, new state and decisions out. No database, no clock (`hq.dispatching` applies the
decisions in a transaction that re-checks the state they were made on, and `hq.escalation` drives the clock).
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass, replace


class Outcome(enum.StrEnum):
    PENDING = "pending"
    ACCEPTED = "accepted"
    DECLINED = "declined"
    WITHDRAWN = "withdrawn"  # someone else took it, or the consultation was cancelled
    EXPIRED = "expired"  # its round timed out and the consultation went to the next round


class Phase(enum.StrEnum):
    """The dispatch-relevant part of `hq.consultations.Status`."""

    WAITING = "requested"  # no round yet
    DISPATCHING = "dispatching"
    ESCALATED = "escalated"
    ACCEPTED = "accepted"
    CANCELLED = "cancelled"


OPEN = (Phase.WAITING, Phase.DISPATCHING, Phase.ESCALATED)


@dataclass(frozen=True, slots=True)
class Policy:
    per_round: int  # N: experts offered at once
    timeout_ms: int  # T: how long a round waits before escalating
    max_rounds: int = 3  # rounds of offers at most; then the coordinators take over

    def __post_init__(self) -> None:
        if self.per_round < 1 or self.timeout_ms < 1 or self.max_rounds < 1:
            raise ValueError("per_round, timeout_ms and max_rounds must be >= 1")


@dataclass(frozen=True, slots=True)
class Offer:
    expert_id: int
    round: int
    offered_ms: int
    outcome: Outcome = Outcome.PENDING


@dataclass(frozen=True, slots=True)
class State:
    phase: Phase
    round: int = 0  # the current round (1, 2, ...); 0 before the first
    deadline_ms: int | None = None  # when the current round escalates; None: nothing to wait for
    offers: tuple[Offer, ...] = ()
    taken_by: int | None = None

    @property
    def pending(self) -> tuple[Offer, ...]:
        return tuple(o for o in self.offers if o.outcome is Outcome.PENDING)

    @property
    def offered(self) -> frozenset[int]:
        return frozenset(o.expert_id for o in self.offers)

    def offer_of(self, expert_id: int) -> Offer | None:
        return next((o for o in self.offers if o.expert_id == expert_id), None)


# ---- decisions -------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class OfferTo:
    expert_ids: tuple[int, ...]
    round: int


@dataclass(frozen=True, slots=True)
class Withdraw:
    expert_ids: tuple[int, ...]


@dataclass(frozen=True, slots=True)
class Expire:
    expert_ids: tuple[int, ...]


@dataclass(frozen=True, slots=True)
class NotifyCoordinators:
    round: int  # the round that went unanswered
    exhausted: bool  # nobody is left to offer it to: a coordinator must act


@dataclass(frozen=True, slots=True)
class Taken:
    expert_id: int


@dataclass(frozen=True, slots=True)
class Refused:
    """An accept or decline that cannot be: the reason is for the expert."""

    reason: str


Decision = OfferTo | Withdraw | Expire | NotifyCoordinators | Taken | Refused


def _offer_round(state: State, ranked: Sequence[int], policy: Policy, now: int) -> tuple[State, list[Decision]]:
    """The next round to the best-ranked experts not offered yet, or (none left / rounds used up) the
    coordinators. Pending offers of the round before expire only when there is someone new to offer to."""
    fresh = [e for e in dict.fromkeys(ranked) if e not in state.offered][:policy.per_round]
    next_round = state.round + 1
    if not fresh or next_round > policy.max_rounds:
        escalated = replace(state, phase=Phase.ESCALATED if state.round else Phase.WAITING, deadline_ms=None)
        return escalated, [NotifyCoordinators(state.round, exhausted=True)]
    decisions: list[Decision] = []
    offers = state.offers
    expiring = tuple(o.expert_id for o in state.pending)
    if expiring:
        offers = tuple(replace(o, outcome=Outcome.EXPIRED) if o.outcome is Outcome.PENDING else o for o in offers)
        decisions.append(Expire(expiring))
    if state.round:
        decisions.append(NotifyCoordinators(state.round, exhausted=False))
    offers += tuple(Offer(e, next_round, now) for e in fresh)
    decisions.append(OfferTo(tuple(fresh), next_round))
    phase = Phase.DISPATCHING if next_round == 1 else Phase.ESCALATED
    return State(phase, next_round, now + policy.timeout_ms, offers, None), decisions


def start(state: State, ranked: Sequence[int], policy: Policy, now: int) -> tuple[State, list[Decision]]:
    """The first round; `ranked` is the matching's order, best first."""
    if state.phase is not Phase.WAITING or state.round:
        return state, []
    return _offer_round(state, ranked, policy, now)


def accept(state: State, expert_id: int, now: int) -> tuple[State, list[Decision]]:
    """The first accept of a pending offer takes the consultation; every other pending offer is withdrawn."""
    if state.phase is Phase.ACCEPTED:
        who = "you" if state.taken_by == expert_id else "another expert"
        return state, [Refused(f"already accepted by {who}")]
    if state.phase is Phase.CANCELLED:
        return state, [Refused("the consultation was cancelled")]
    offer = state.offer_of(expert_id)
    if offer is None:
        return state, [Refused("it was not offered to you")]
    if offer.outcome is not Outcome.PENDING:
        return state, [Refused(f"your offer is {offer.outcome}")]
    others = tuple(o.expert_id for o in state.pending if o.expert_id != expert_id)
    offers = tuple(
        replace(o, outcome=Outcome.ACCEPTED) if o.expert_id == expert_id
        else replace(o, outcome=Outcome.WITHDRAWN) if o.outcome is Outcome.PENDING else o
        for o in state.offers)
    decisions: list[Decision] = [Taken(expert_id)]
    if others:
        decisions.append(Withdraw(others))
    return State(Phase.ACCEPTED, state.round, None, offers, expert_id), decisions


def decline(state: State, expert_id: int, ranked: Sequence[int], policy: Policy,
            now: int) -> tuple[State, list[Decision]]:
    """An expert says no; when nobody of the round is left pending, the next round starts at once."""
    offer = state.offer_of(expert_id)
    if state.phase not in OPEN or offer is None or offer.outcome is not Outcome.PENDING:
        return state, [Refused("there is no open offer to you to decline")]
    offers = tuple(replace(o, outcome=Outcome.DECLINED) if o.expert_id == expert_id else o for o in state.offers)
    state = replace(state, offers=offers)
    if any(o.round == state.round for o in state.pending):
        return state, []
    return _offer_round(state, ranked, policy, now)


def tick(state: State, ranked: Sequence[int], policy: Policy, now: int) -> tuple[State, list[Decision]]:
    """Time passes: a round whose deadline has come escalates."""
    if state.phase not in OPEN or state.deadline_ms is None or now < state.deadline_ms:
        return state, []
    return _offer_round(state, ranked, policy, now)


def cancel(state: State) -> tuple[State, list[Decision]]:
    pending = tuple(o.expert_id for o in state.pending)
    offers = tuple(replace(o, outcome=Outcome.WITHDRAWN) if o.outcome is Outcome.PENDING else o for o in state.offers)
    return State(Phase.CANCELLED, state.round, None, offers, state.taken_by), [Withdraw(pending)] if pending else []
