"""Chaos figures: heavy ingest while the gateway is killed (-9) 20 times, HQ twice and the broker once;
then counts what HQ holds against what the gateway committed.

Prints: chaos_committed, chaos_lost (must be 0), chaos_duplicated (must be 0), chaos_out_of_order.
"""

from __future__ import annotations

from tests.support.chaos import (
    audit,
    heavy_clinic,
    kill_broker,
    kill_gateway_repeatedly,
    kill_hq_repeatedly,
    stop_devices_and_drain,
)
from tests.support.ports import eventually
from tests.support.stack import Stack


def main() -> None:
    spec = heavy_clinic()
    with Stack() as stack:
        stack.start_broker()
        stack.start_hq()
        stack.start_gateway(spec)
        eventually(lambda: stack.gateway_status(spec.gateway_id)["uplink"]["records_acked"] > 100, 30, "ingest")
        kill_gateway_repeatedly(stack, spec, kills=20, run_s=1.0)
        kill_hq_repeatedly(stack, kills=2)
        kill_broker(stack, down_s=3)
        stop_devices_and_drain(stack, spec)
        result = audit(stack, spec.gateway_id)
    print(f"chaos_committed: {result.committed} entries")
    print(f"chaos_dropped_by_quota: {result.dropped} entries")
    print(f"chaos_lost: {result.lost} entries")
    print(f"chaos_duplicated: {result.duplicated} readings")
    print(f"chaos_out_of_order: {result.out_of_order} devices")


if __name__ == "__main__":
    main()
