from gateway.quota import plan_drop
from gateway.wire import Lane


def test_within_quota_drops_nothing() -> None:
    assert plan_drop(900, 1000, {Lane.VITALS: 10}) == []


def test_drops_lowest_lanes_first_down_to_ninety_percent() -> None:
    counts = {Lane.ALARM: 10, Lane.VITALS: 50, Lane.BACKLOG: 30, Lane.BULK: 10}
    # 100 entries of 20 bytes = 2000 bytes against a quota of 1500: free 650 bytes = 33 entries.
    assert plan_drop(2000, 1500, counts) == [(Lane.BULK, 10), (Lane.BACKLOG, 23)]
    assert plan_drop(2000, 500, counts) == [(Lane.BULK, 10), (Lane.BACKLOG, 30), (Lane.VITALS, 38)]


def test_alarms_and_consultation_events_are_never_dropped() -> None:
    plan = plan_drop(10_000, 100, {Lane.ALARM: 40, Lane.CONSULT: 40, Lane.VITALS: 20})
    assert plan == [(Lane.VITALS, 20)]
    assert plan_drop(10_000, 100, {Lane.ALARM: 100}) == []
