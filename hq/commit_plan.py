"""Turns what the ingest queue delivered (batches and statuses) into one transaction's work: pure, no I/O.

A `CommitPlan` holds the observation rows, the gateway and clinic upserts and the ack ranges to send
once the transaction committed. `hq.store` executes it; `hq.ingest` publishes the acks.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from gateway import wire
from hq.fleet import GatewayUpdate, update_from_batch, update_from_status

AckRange = tuple[wire.Lane, int, int]


@dataclass(frozen=True, slots=True)
class ReceivedBatch:
    batch: wire.Batch


@dataclass(frozen=True, slots=True)
class ReceivedStatus:
    gateway_id: str
    status: wire.Status
    retained: bool
    received_ms: int


Received = ReceivedBatch | ReceivedStatus


@dataclass(slots=True)
class CommitPlan:
    hq_ms: int
    rows: list[dict[str, Any]] = field(default_factory=list)
    clinics: set[str] = field(default_factory=set)
    gateways: dict[str, GatewayUpdate] = field(default_factory=dict)
    acks: dict[str, list[AckRange]] = field(default_factory=dict)
    batches: int = 0
    statuses: int = 0
    records: int = 0  # records received, counting repeats of the same (gateway, seq)


def plan_commit(items: Iterable[Received], *, hq_ms: int, offline_after_ms: int) -> CommitPlan:
    """Rows (deduplicated by (gateway, seq)), gateway updates folded in arrival order, merged ack ranges."""
    plan = CommitPlan(hq_ms)
    seen: set[tuple[str, int]] = set()
    ranges: dict[str, list[AckRange]] = {}
    for item in items:
        if isinstance(item, ReceivedBatch):
            batch = item.batch
            plan.batches += 1
            plan.records += len(batch.records)
            plan.rows.extend(observation_rows(batch, hq_ms, seen))
            ranges.setdefault(batch.gateway_id, []).append((batch.lane, batch.first_seq, batch.last_seq))
            update = update_from_batch(batch, hq_ms=hq_ms)
        else:
            plan.statuses += 1
            update = update_from_status(item.gateway_id, item.status, retained=item.retained,
                                        hq_ms=item.received_ms, offline_after_ms=offline_after_ms)
        plan.clinics.add(update.clinic_id)
        previous = plan.gateways.get(update.gateway_id)
        plan.gateways[update.gateway_id] = update if previous is None else previous.merged(update)
    plan.acks = {gw: merge_ranges(r) for gw, r in ranges.items()}
    return plan


def observation_rows(batch: wire.Batch, hq_ms: int, seen: set[tuple[str, int]]) -> list[dict[str, Any]]:
    gw, clinic = batch.gateway_id, batch.clinic_id
    rows = []
    for r in batch.records:
        key = (gw, r.seq)
        if key in seen:
            continue
        seen.add(key)
        rows.append({
            "gateway_id": gw, "seq": r.seq, "clinic_id": clinic, "kind": r.kind, "metric": r.metric,
            "value": r.value, "unit": r.unit, "time_ms": r.time_ms, "recv_ms": r.recv_ms, "hq_ms": hq_ms,
            "patient_id": r.patient_id, "device_id": r.device_id, "extra": r.extra,
        })
    return rows


def merge_ranges(ranges: Iterable[AckRange]) -> list[AckRange]:
    """Sort per lane and join ranges that overlap or touch.

    Ranges with a gap between them stay apart: the seqs in the gap may belong to the same lane but not
    have been committed, and a gateway deletes whatever an ack range covers.
    """
    out: list[AckRange] = []
    for lane, first, last in sorted(ranges):
        if out and out[-1][0] == lane and first <= out[-1][2] + 1:
            prev = out[-1]
            out[-1] = (lane, prev[1], max(prev[2], last))
        else:
            out.append((lane, first, last))
    return out
