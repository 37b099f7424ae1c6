"""The gateway's newest reading per device and metric: what an emergency click attaches as current vitals."""

from __future__ import annotations

from gateway.latest_readings import MAX_AGE_MS, LatestReadings
from gateway.outbox import Entry

NOW = 1_800_000_000_000


def reading(device: str, metric: str, value: float, age_ms: int, patient: str | None = "P-1",
            kind: str = "observation") -> Entry:
    t = NOW - age_ms
    return Entry(kind, metric, value, "%", t, t, patient, device)


def test_the_newest_reading_of_each_metric_of_the_patient_is_kept() -> None:
    latest = LatestReadings()
    latest.remember([reading("mon-1", "SPO2", 97, 5000), reading("mon-1", "SPO2", 91, 1000),
                     reading("mon-1", "SPO2", 99, 3000),  # older than the one kept: a late backlog reading
                     reading("mon-1", "ALARM", 1, 500, kind="alarm"),
                     reading("ox-2", "SPO2", 95, 1000, patient="P-2")])
    snap = latest.snapshot(NOW, patient_id="P-1")
    assert [(v.device_id, v.metric, v.value) for v in snap] == [("mon-1", "SPO2", 91)]
    assert [v.device_id for v in latest.snapshot(NOW)] == ["mon-1", "ox-2"]
    assert [v.device_id for v in latest.snapshot(NOW, devices=["ox-2"])] == ["ox-2"]


def test_stale_readings_are_not_current_vitals_and_patients_are_listed_with_their_devices() -> None:
    latest = LatestReadings()
    latest.remember([reading("mon-1", "SPO2", 97, MAX_AGE_MS + 1), reading("ox-2", "SPO2", 95, 1000, "P-2"),
                     reading("mon-3", "HR", 80, 2000, "P-2")])
    assert latest.snapshot(NOW, patient_id="P-1") == []
    [monitored] = latest.monitored(NOW)
    assert (monitored.patient_id, monitored.devices) == ("P-2", ("mon-3", "ox-2"))


async def test_recording_remembers_only_what_the_store_committed() -> None:
    latest = LatestReadings()
    stored: list[Entry] = []

    async def store(entries: object) -> list[int]:
        stored.extend(entries)  # type: ignore[call-overload]
        return [1]

    append = latest.recording(store)
    assert await append([reading("mon-1", "SPO2", 97, 0)]) == [1]
    assert len(stored) == 1 and latest.snapshot(NOW)[0].value == 97
