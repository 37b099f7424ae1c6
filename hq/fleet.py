"""What HQ knows about each gateway, folded from status messages and data batches: pure rules, no I/O.

`GatewayUpdate` is the change one message makes to a `gateways` row; `hq.store` applies it.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

from gateway import wire


@dataclass(frozen=True, slots=True)
class GatewayUpdate:
    """Fields left None are left as they are in the database."""

    gateway_id: str
    clinic_id: str
    state: wire.GatewayState | None = None
    contact_ms: int | None = None
    software: str | None = None
    started_ms: int | None = None
    backlog: dict[str, list[int | None]] | None = None
    devices: list[dict[str, Any]] | None = None
    committed_seq: int | None = None
    complete_below: int | None = None
    drain_rate_per_s: float | None = None
    config_version: int | None = None  # HQ-managed settings version the gateway runs

    @property
    def backlog_total(self) -> int | None:
        if self.backlog is None:
            return None
        return sum(int(count or 0) for count, _oldest in self.backlog.values())

    def merged(self, later: GatewayUpdate) -> GatewayUpdate:
        """This update followed by `later`: later fields win; contact and the seq watermarks only grow."""
        return replace(
            self,
            clinic_id=later.clinic_id,
            state=later.state if later.state is not None else self.state,
            contact_ms=_max_or_none(self.contact_ms, later.contact_ms),
            software=later.software if later.software is not None else self.software,
            started_ms=later.started_ms if later.started_ms is not None else self.started_ms,
            backlog=later.backlog if later.backlog is not None else self.backlog,
            devices=later.devices if later.devices is not None else self.devices,
            committed_seq=_max_or_none(self.committed_seq, later.committed_seq),
            complete_below=_max_or_none(self.complete_below, later.complete_below),
            drain_rate_per_s=later.drain_rate_per_s if later.drain_rate_per_s is not None
            else self.drain_rate_per_s,
            config_version=later.config_version if later.config_version is not None else self.config_version,
        )


def _max_or_none(a: int | None, b: int | None) -> int | None:
    if a is None:
        return b
    if b is None:
        return a
    return max(a, b)


def is_last_will(status: wire.Status) -> bool:
    # The gateway sets its will at connect time, when it knows no clock reading: time_ms is 0.
    return status.state is wire.GatewayState.OFFLINE and status.time_ms == 0


def update_from_status(
    gateway_id: str, status: wire.Status, *, retained: bool, hq_ms: int, offline_after_ms: int
) -> GatewayUpdate:
    """The gateways-row change a status message makes.

    A live message is contact now. A retained one (delivered when HQ subscribes) may be old: its own
    time is the contact, and an "online" status older than `offline_after_ms` means offline. A last will
    is published by the broker, not the gateway: it changes the state only (the backlog is still there).
    """
    if is_last_will(status):
        return GatewayUpdate(gateway_id, status.clinic_id, state=wire.GatewayState.OFFLINE,
                             software=status.software or None)
    contact_ms = min(status.time_ms, hq_ms) if retained else hq_ms
    state = status.state
    if state is wire.GatewayState.ONLINE and hq_ms - contact_ms > offline_after_ms:
        state = wire.GatewayState.OFFLINE
    return GatewayUpdate(
        gateway_id,
        status.clinic_id,
        state=state,
        contact_ms=contact_ms,
        software=status.software,
        started_ms=status.started_ms,
        backlog={lane.name.lower(): [b.count, b.oldest_ms] for lane, b in sorted(status.backlog.items())},
        devices=[
            {"device_id": d.device_id, "protocol": d.protocol, "source": d.source, "state": d.state,
             "last_ms": d.last_ms}
            for d in status.devices
        ],
        drain_rate_per_s=status.drain_rate_per_s,
        config_version=status.config_version,
    )


def update_from_batch(batch: wire.Batch, *, hq_ms: int) -> GatewayUpdate:
    """Data from a gateway is contact: it is online, HQ now holds seqs up to the batch's last, and (the
    gateway says) every seq below the batch's floor."""
    return GatewayUpdate(batch.gateway_id, batch.clinic_id, state=wire.GatewayState.ONLINE, contact_ms=hq_ms,
                         committed_seq=batch.last_seq, complete_below=batch.floor)


def is_silent(state: str, last_contact_ms: int | None, *, now_ms: int, offline_after_ms: int) -> bool:
    """An online gateway not heard for `offline_after_ms` is offline even though no will arrived."""
    if state != wire.GatewayState.ONLINE:
        return False
    return last_contact_ms is None or now_ms - last_contact_ms > offline_after_ms
