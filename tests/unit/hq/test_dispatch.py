"""The dispatch state machine with time passed in: rounds of N, the first accept wins and the others are
withdrawn, an unanswered round escalates after T to the next N and the coordinators, declines move on at once."""

from __future__ import annotations

import pytest

from hq import dispatch as d

T0 = 1_800_000_000_000
POLICY = d.Policy(per_round=2, timeout_ms=60_000, max_rounds=3)
RANKED = [11, 12, 13, 14, 15]


def started() -> d.State:
    state, decisions = d.start(d.State(d.Phase.WAITING), RANKED, POLICY, T0)
    assert decisions == [d.OfferTo((11, 12), 1)]
    return state


def test_the_first_round_goes_to_the_top_n_at_once_with_a_deadline_of_t() -> None:
    state = started()
    assert (state.phase, state.round, state.deadline_ms) == (d.Phase.DISPATCHING, 1, T0 + 60_000)
    assert [(o.expert_id, o.round, o.offered_ms, o.outcome) for o in state.offers] == [
        (11, 1, T0, d.Outcome.PENDING), (12, 1, T0, d.Outcome.PENDING)]
    assert d.start(state, RANKED, POLICY, T0 + 1) == (state, [])  # starting twice does nothing


def test_the_first_accept_takes_it_and_the_others_are_withdrawn() -> None:
    state, decisions = d.accept(started(), 12, T0 + 5_000)
    assert decisions == [d.Taken(12), d.Withdraw((11,))]
    assert (state.phase, state.taken_by, state.deadline_ms) == (d.Phase.ACCEPTED, 12, None)
    assert {o.expert_id: o.outcome for o in state.offers} == {11: d.Outcome.WITHDRAWN, 12: d.Outcome.ACCEPTED}
    assert d.accept(state, 11, T0 + 5_001)[1] == [d.Refused("already accepted by another expert")]
    assert d.accept(state, 12, T0 + 5_001)[1] == [d.Refused("already accepted by you")]


def test_an_expert_not_offered_cannot_accept() -> None:
    assert d.accept(started(), 99, T0)[1] == [d.Refused("it was not offered to you")]


def test_nothing_happens_before_t_and_at_t_the_round_escalates_to_the_next_n_and_the_coordinators() -> None:
    state = started()
    assert d.tick(state, RANKED, POLICY, T0 + 59_999) == (state, [])
    state, decisions = d.tick(state, RANKED, POLICY, T0 + 60_000)
    assert decisions == [d.Expire((11, 12)), d.NotifyCoordinators(1, exhausted=False), d.OfferTo((13, 14), 2)]
    assert (state.phase, state.round, state.deadline_ms) == (d.Phase.ESCALATED, 2, T0 + 120_000)
    assert d.accept(state, 11, T0 + 60_001)[1] == [d.Refused("your offer is expired")]
    state, decisions = d.accept(state, 14, T0 + 61_000)
    assert decisions == [d.Taken(14), d.Withdraw((13,))]


def test_a_late_tick_escalates_once_from_the_time_it_runs() -> None:
    # HQ was down for ten minutes: on restart the round escalates once, and the next round gets a full T.
    state, decisions = d.tick(started(), RANKED, POLICY, T0 + 600_000)
    assert decisions[-1] == d.OfferTo((13, 14), 2) and state.deadline_ms == T0 + 660_000


def test_when_nobody_is_left_the_last_offers_stay_open_and_the_coordinators_must_act() -> None:
    state = started()
    for round_end in (T0 + 60_000, T0 + 120_000):
        state, _ = d.tick(state, RANKED, POLICY, round_end)
    assert state.round == 3 and [o.expert_id for o in state.pending] == [15]
    state, decisions = d.tick(state, RANKED, POLICY, T0 + 180_000)
    assert decisions == [d.NotifyCoordinators(3, exhausted=True)]
    assert (state.phase, state.deadline_ms, [o.expert_id for o in state.pending]) == (d.Phase.ESCALATED, None, [15])
    assert d.tick(state, RANKED, POLICY, T0 + 999_000) == (state, [])
    assert d.accept(state, 15, T0 + 999_000)[1] == [d.Taken(15)]


def test_max_rounds_stop_the_offers_even_with_experts_left() -> None:
    policy = d.Policy(per_round=1, timeout_ms=1000, max_rounds=2)
    state, _ = d.start(d.State(d.Phase.WAITING), RANKED, policy, T0)
    state, _ = d.tick(state, RANKED, policy, T0 + 1000)
    state, decisions = d.tick(state, RANKED, policy, T0 + 2000)
    assert decisions == [d.NotifyCoordinators(2, exhausted=True)] and state.round == 2


def test_no_candidate_at_all_goes_to_the_coordinators_at_once() -> None:
    state, decisions = d.start(d.State(d.Phase.WAITING), [], POLICY, T0)
    assert decisions == [d.NotifyCoordinators(0, exhausted=True)]
    assert (state.phase, state.round, state.deadline_ms) == (d.Phase.WAITING, 0, None)


def test_when_the_whole_round_declines_the_next_round_starts_without_waiting_for_t() -> None:
    state = started()
    state, decisions = d.decline(state, 11, RANKED, POLICY, T0 + 1000)
    assert decisions == [] and state.round == 1
    state, decisions = d.decline(state, 12, RANKED, POLICY, T0 + 2000)
    assert decisions == [d.NotifyCoordinators(1, exhausted=False), d.OfferTo((13, 14), 2)]
    assert state.deadline_ms == T0 + 62_000
    assert d.decline(state, 12, RANKED, POLICY, T0 + 3000)[1] == [d.Refused(
        "there is no open offer to you to decline")]


def test_a_ranking_that_changed_between_rounds_is_followed_without_offering_anyone_twice() -> None:
    _, decisions = d.tick(started(), [12, 15, 11, 13], POLICY, T0 + 60_000)
    assert decisions[-1] == d.OfferTo((15, 13), 2)


def test_cancelling_withdraws_every_open_offer() -> None:
    state, decisions = d.cancel(started())
    assert decisions == [d.Withdraw((11, 12))] and state.phase is d.Phase.CANCELLED
    assert d.accept(state, 11, T0)[1] == [d.Refused("the consultation was cancelled")]


def test_a_policy_needs_positive_numbers() -> None:
    with pytest.raises(ValueError, match="per_round"):
        d.Policy(per_round=0, timeout_ms=1)
