"""The documented restore, end to end over real processes: HQ's database is lost, restored from its
Litestream replica as it was some seconds earlier (a replica always lags a little), and HQ has the
gateway replay what the restored copy lacks. Afterwards HQ again holds every reading exactly once."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from tests.support.chaos import audit, hq_count
from tests.support.ports import eventually
from tests.support.stack import GatewaySpec, SimulatedDevice, Stack


@pytest.fixture
def stack() -> Iterator[Stack]:
    with Stack() as s:
        s.start_broker()
        s.start_hq()
        yield s


def test_hq_restored_from_its_replica_gets_the_lost_tail_replayed_by_the_gateway(stack: Stack) -> None:
    spec = GatewaySpec("gw-r", "clinic-r", [
        SimulatedDevice(f"monitor-{i}", "hl7", f"P-R-{i}", rate=10.0, seed=70 + i) for i in range(2)
    ], heartbeat_s=1)
    stack.start_gateway(spec)
    db = Path(stack.db_url.removeprefix("sqlite:///"))
    eventually(lambda: hq_count(stack, spec.gateway_id) > 200, 60, "readings at HQ")
    time.sleep(1.5)
    restore_point = datetime.now(UTC)
    time.sleep(6)  # everything from here on is missing from the point-in-time copy
    for dev in spec.devices:
        stack.stop_process(f"sim-{spec.gateway_id}-{dev.device_id}")
    eventually(lambda: sum(b["count"] for b in stack.gateway_status(spec.gateway_id)["backlog"].values()) == 0,
               60, "outbox drained")
    before = audit(stack, spec.gateway_id)
    assert before.lost == 0 and before.at_hq == before.committed

    stack.stop_process("hq")
    for path in (db, db.with_name(db.name + "-wal"), db.with_name(db.name + "-shm")):
        path.unlink(missing_ok=True)
    out = stack.restore_hq(timestamp=restore_point.strftime("%Y-%m-%dT%H:%M:%SZ"))
    assert "restored" in out
    restored = hq_count(stack, spec.gateway_id)
    assert 0 < restored < before.committed - 100, (restored, before.committed)  # the tail really is gone

    stack.start_hq()
    eventually(lambda: audit(stack, spec.gateway_id).at_hq == before.committed, 60, "replayed tail at HQ")
    after = audit(stack, spec.gateway_id)
    assert (after.lost, after.duplicated, after.out_of_order) == (0, 0, 0), after
    status = stack.gateway_status(spec.gateway_id)
    replayed = int(status["outbox"]["replayed_total"])  # type: ignore[index]
    # The gateway sent again the lost tail (and at most a little more: what was in flight around the
    # restore point), not its whole day of kept entries.
    assert before.committed - restored <= replayed < before.committed, (replayed, restored, before.committed)
