"""`LatestReadings`: the newest reading of each metric of each device, kept in memory as capture commits them,
so the staff screen can show who is monitored and attach current vitals to an emergency at the click.

Not storage: the outbox is. After a restart it fills again with the devices' next readings.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from gateway.capture import Store
from gateway.consultation_wire import VitalSign
from gateway.outbox import Entry

MAX_AGE_MS = 10 * 60 * 1000  # older readings are not "current vitals"


@dataclass(frozen=True, slots=True)
class Monitored:
    patient_id: str
    devices: tuple[str, ...]
    last_ms: int


class LatestReadings:
    def __init__(self) -> None:
        # device -> metric -> (reading, the gateway's receive time): ages are judged on the gateway's clock,
        # device clocks drift.
        self._by_device: dict[str, dict[str, tuple[VitalSign, int]]] = {}

    def remember(self, entries: Iterable[Entry]) -> None:
        for e in entries:
            if e.kind != "observation":
                continue
            metrics = self._by_device.setdefault(e.device_id, {})
            known = metrics.get(e.metric)
            if known is None or known[0].time_ms <= e.time_ms:
                sign = VitalSign(e.metric, e.value, e.unit, e.time_ms, e.device_id, e.patient_id)
                metrics[e.metric] = (sign, e.recv_ms)

    def recording(self, store: Store) -> Store:
        """`store` (the outbox's append) that also remembers what it committed."""

        async def append(entries: Sequence[Entry]) -> list[int]:
            seqs = await store(entries)
            self.remember(entries)
            return seqs

        return append

    def snapshot(self, now_ms: int, *, patient_id: str | None = None,
                 devices: Sequence[str] = ()) -> list[VitalSign]:
        """The current readings of a patient (all devices that report for them), or of the given devices,
        or of every device when neither is given; newest per (device, metric), at most MAX_AGE_MS old."""
        found = []
        for device_id, metrics in sorted(self._by_device.items()):
            if devices and device_id not in devices:
                continue
            for sign, recv_ms in metrics.values():
                if now_ms - recv_ms > MAX_AGE_MS:
                    continue
                if patient_id is not None and not devices and sign.patient_id != patient_id:
                    continue
                found.append(sign)
        return sorted(found, key=lambda s: (s.device_id, s.metric))

    def monitored(self, now_ms: int) -> list[Monitored]:
        """Patients with current readings, and the devices that report them."""
        by_patient: dict[str, tuple[set[str], int]] = {}
        for device_id, metrics in self._by_device.items():
            for sign, recv_ms in metrics.values():
                if sign.patient_id is None or now_ms - recv_ms > MAX_AGE_MS:
                    continue
                devices, last = by_patient.get(sign.patient_id, (set(), 0))
                devices.add(device_id)
                by_patient[sign.patient_id] = (devices, max(last, recv_ms))
        return [Monitored(pid, tuple(sorted(devs)), last) for pid, (devs, last) in sorted(by_patient.items())]
