from gateway.quota import plan_drop
from gateway.wire import Lane


def test_within_quota_drops_nothing() -> None:
    assert plan_drop(900, 1000, {Lane.VITALS: 10}, confirmed=50) == (0, [])


def test_drops_lowest_lanes_first_down_to_ninety_percent() -> None:
    counts = {Lane.ALARM: 10, Lane.VITALS: 50, Lane.BACKLOG: 30, Lane.BULK: 10}
    # 100 entries of 20 bytes = 2000 bytes against a quota of 1500: free 650 bytes = 33 entries.
    assert plan_drop(2000, 1500, counts) == (0, [(Lane.BULK, 10), (Lane.BACKLOG, 23)])
    assert plan_drop(2000, 500, counts) == (0, [(Lane.BULK, 10), (Lane.BACKLOG, 30), (Lane.VITALS, 38)])


def test_entries_hq_confirmed_go_before_any_waiting_entry() -> None:
    counts = {Lane.ALARM: 10, Lane.VITALS: 40, Lane.BULK: 10}
    # 100 entries (40 of them confirmed) of 20 bytes against 1500: 33 entries must go, all confirmed ones.
    assert plan_drop(2000, 1500, counts, confirmed=40) == (33, [])
    # 80 entries of 25 bytes against 500: 62 must go; the 20 confirmed first, then bulk, then live vitals.
    assert plan_drop(2000, 500, counts, confirmed=20) == (20, [(Lane.BULK, 10), (Lane.VITALS, 32)])


def test_alarms_and_consultation_events_are_never_dropped() -> None:
    assert plan_drop(10_000, 100, {Lane.ALARM: 40, Lane.CONSULT: 40, Lane.VITALS: 20}) == (0, [(Lane.VITALS, 20)])
    assert plan_drop(10_000, 100, {Lane.ALARM: 100}) == (0, [])
