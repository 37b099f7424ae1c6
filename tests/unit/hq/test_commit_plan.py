"""Grouping received batches and statuses into one transaction's rows, gateway updates and ack ranges."""

from __future__ import annotations

from gateway import wire
from gateway.wire import Lane
from hq.commit_plan import ReceivedBatch, ReceivedStatus, merge_ranges, plan_commit


def batch(gw: str, lane: Lane, seqs: list[int], clinic: str = "c1") -> wire.Batch:
    records = [wire.WireRecord(s, "observation", "MDC_PULS_OXIM_SAT_O2", 97.0, "%", 1000 + s, 1100 + s, "P1", "ox")
               for s in seqs]
    return wire.Batch(gw, clinic, lane, 5000, records)


def test_rows_carry_gateway_clinic_and_hq_time() -> None:
    plan = plan_commit([ReceivedBatch(batch("gw1", Lane.VITALS, [1, 2]))], hq_ms=9000, offline_after_ms=60_000)
    assert [(r["gateway_id"], r["seq"], r["clinic_id"], r["hq_ms"], r["recv_ms"]) for r in plan.rows] == [
        ("gw1", 1, "c1", 9000, 1101), ("gw1", 2, "c1", 9000, 1102)]
    assert plan.clinics == {"c1"}
    assert plan.batches == 1 and plan.records == 2


def test_same_batch_twice_gives_rows_once_and_ack_for_both() -> None:
    b = batch("gw1", Lane.VITALS, [1, 2, 3])
    plan = plan_commit([ReceivedBatch(b), ReceivedBatch(b)], hq_ms=1, offline_after_ms=60_000)
    assert [r["seq"] for r in plan.rows] == [1, 2, 3]
    assert plan.records == 6
    assert plan.acks == {"gw1": [(Lane.VITALS, 1, 3)]}


def test_acks_per_gateway_and_lane() -> None:
    items = [ReceivedBatch(batch("gw1", Lane.VITALS, [1, 2])), ReceivedBatch(batch("gw2", Lane.ALARM, [7])),
             ReceivedBatch(batch("gw1", Lane.ALARM, [3])), ReceivedBatch(batch("gw1", Lane.VITALS, [4, 5]))]
    plan = plan_commit(items, hq_ms=1, offline_after_ms=60_000)
    assert plan.acks == {"gw1": [(Lane.ALARM, 3, 3), (Lane.VITALS, 1, 2), (Lane.VITALS, 4, 5)],
                         "gw2": [(Lane.ALARM, 7, 7)]}
    assert plan.gateways["gw1"].committed_seq == 5
    assert plan.gateways["gw1"].state is wire.GatewayState.ONLINE


def test_merge_ranges_joins_only_touching_or_overlapping() -> None:
    assert merge_ranges([(Lane.VITALS, 5, 9), (Lane.VITALS, 1, 4), (Lane.VITALS, 12, 12),
                         (Lane.VITALS, 3, 6)]) == [(Lane.VITALS, 1, 9), (Lane.VITALS, 12, 12)]
    assert merge_ranges([(Lane.BACKLOG, 1, 2), (Lane.VITALS, 3, 4)]) == [(Lane.VITALS, 3, 4), (Lane.BACKLOG, 1, 2)]


def test_status_after_data_in_the_same_group_wins() -> None:
    will = wire.Status(wire.GatewayState.OFFLINE, "c1", 0, "1.0")
    items = [ReceivedBatch(batch("gw1", Lane.VITALS, [1])), ReceivedStatus("gw1", will, False, 2000)]
    plan = plan_commit(items, hq_ms=3000, offline_after_ms=60_000)
    update = plan.gateways["gw1"]
    assert update.state is wire.GatewayState.OFFLINE
    assert update.contact_ms == 3000  # the data was contact; the will is not
    assert update.committed_seq == 1
    assert plan.statuses == 1 and plan.acks == {"gw1": [(Lane.VITALS, 1, 1)]}


def test_alarm_batches_overtake_backlog_batches_in_the_ingest_queue() -> None:
    from hq.commit_plan import ReceivedBatch
    from hq.ingest import _priority

    def batch(lane: wire.Lane) -> ReceivedBatch:
        record = wire.WireRecord(1, "observation", "M", 1.0, None, 0, 0, None, "d")
        return ReceivedBatch(wire.Batch("gw", "c", lane, 0, [record]))

    queued = [batch(wire.Lane.BACKLOG), batch(wire.Lane.VITALS), batch(wire.Lane.ALARM)]
    order = sorted(range(3), key=lambda i: (_priority(queued[i]), i))
    assert [queued[i].batch.lane for i in order] == [wire.Lane.ALARM, wire.Lane.VITALS, wire.Lane.BACKLOG]
