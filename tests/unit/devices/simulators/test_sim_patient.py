"""The simulated patient: deterministic, plausible, and raising alarms with start and end."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from devices.records import AlarmState, Kind
from devices.simulators.patient import Patient

T0 = datetime(2026, 11, 21, 8, 0, tzinfo=UTC)


def run(patient: Patient, seconds: int) -> list:
    out = []
    for i in range(seconds):
        out += patient.step(T0 + timedelta(seconds=i))
    return out


def test_same_seed_same_records() -> None:
    assert run(Patient(7, "P"), 300) == run(Patient(7, "P"), 300)
    assert run(Patient(7, "P"), 50) != run(Patient(8, "P"), 50)


def test_values_stay_plausible_and_nibp_is_periodic() -> None:
    records = run(Patient(3, "P", nibp_every_s=120), 600)
    by_metric: dict[str, list[float]] = {}
    for r in records:
        if r.kind is Kind.OBSERVATION and r.value is not None:
            by_metric.setdefault(r.metric, []).append(r.value)
    assert all(35 <= v <= 190 for v in by_metric["MDC_ECG_HEART_RATE"])
    assert all(60 <= v <= 100 for v in by_metric["MDC_PULS_OXIM_SAT_O2"])
    assert all(34 <= v <= 41 for v in by_metric["MDC_TEMP_BODY"])
    assert len(by_metric["MDC_PRESS_BLD_NONINV_SYS"]) == 5
    assert len(by_metric["MDC_PULS_OXIM_SAT_O2"]) == 600


def test_forced_episodes_raise_and_clear_alarms() -> None:
    records = run(Patient(5, "P", alarm_every_s=200), 1200)
    alarms = [r for r in records if r.kind is Kind.ALARM and r.alarm is not None]
    spo2 = [r.alarm.state for r in alarms if r.alarm and r.alarm.event == "MDC_EVT_LO"]
    assert spo2[:2] == [AlarmState.ACTIVE, AlarmState.INACTIVE]
    assert len(spo2) >= 6
    assert any(r.alarm and r.alarm.event == "MDC_EVT_HI" and r.metric == "MDC_ECG_HEART_RATE" for r in alarms)
