"""A seeded random-walk patient: slowly varying vitals, desaturation episodes and the alarms they raise.

Pure and deterministic for a seed and a sequence of step times; it does not encode or send anything.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from devices.records import AlarmInfo, AlarmState, Kind, Record

SPO2_LOW_LIMIT = 90.0
HEART_RATE_HIGH_LIMIT = 120.0


@dataclass(slots=True)
class _Vital:
    """An Ornstein-Uhlenbeck walk: pulled back to `mean` at `pull` per second, noise `sigma`."""

    value: float
    mean: float
    pull: float
    sigma: float
    low: float
    high: float

    def step(self, rng: random.Random, dt_s: float, target: float | None = None) -> float:
        mean = self.mean if target is None else target
        self.value += self.pull * (mean - self.value) * dt_s + self.sigma * math.sqrt(dt_s) * rng.gauss(0.0, 1.0)
        self.value = min(self.high, max(self.low, self.value))
        return self.value


class Patient:
    """Produces the records a bedside monitor would report for one patient at each step.

    Every step yields heart rate, pulse rate, SpO2, respiration rate and perfusion index;
    temperature every `temperature_every_s`, NIBP every `nibp_every_s`. Desaturation episodes
    start at random (about one per `desat_every_s` on average) or, with `alarm_every_s`, on a
    fixed period; SpO2 below 90 % raises MDC_EVT_LO and heart rate above 120/min MDC_EVT_HI,
    each with an active record when it starts and an inactive one when it ends.
    """

    def __init__(
        self,
        seed: int,
        patient_id: str | None,
        *,
        device_id: str = "sim",
        nibp_every_s: float = 300.0,
        temperature_every_s: float = 60.0,
        desat_every_s: float = 900.0,
        alarm_every_s: float | None = None,
    ) -> None:
        self.rng = random.Random(seed)
        self.patient_id = patient_id
        self.device_id = device_id
        self.nibp_every_s = nibp_every_s
        self.temperature_every_s = temperature_every_s
        self.desat_every_s = desat_every_s
        self.alarm_every_s = alarm_every_s
        rng = self.rng
        self.heart_rate = _Vital(rng.uniform(62, 88), rng.uniform(65, 85), 0.05, 0.8, 35, 190)
        self.spo2 = _Vital(rng.uniform(95, 99), rng.uniform(96, 98.5), 0.05, 0.3, 60, 100)
        self.resp_rate = _Vital(rng.uniform(12, 18), rng.uniform(13, 17), 0.02, 0.3, 5, 45)
        self.temperature = _Vital(rng.uniform(36.4, 37.2), rng.uniform(36.6, 37.0), 0.002, 0.01, 34, 41)
        self.perfusion = _Vital(rng.uniform(1.5, 6.0), rng.uniform(2.0, 5.0), 0.01, 0.05, 0.1, 20)
        self.systolic = _Vital(rng.uniform(110, 135), rng.uniform(112, 132), 0.001, 0.3, 70, 220)
        self.diastolic_gap = rng.uniform(38, 50)
        self._last: datetime | None = None
        self._next_nibp: datetime | None = None
        self._next_temperature: datetime | None = None
        self._next_forced: datetime | None = None
        self._desat_left_s = 0.0
        self._desat_depth = 0.0
        self._spo2_low = False
        self._hr_high = False

    @property
    def alarms_active(self) -> tuple[bool, bool]:
        """(SpO2 low, heart rate high) as of the last step."""
        return self._spo2_low, self._hr_high

    def step(self, now: datetime) -> list[Record]:
        """Advance to `now` (timezone-aware, not before the previous step) and report."""
        now = now.astimezone(UTC).replace(microsecond=now.microsecond // 1000 * 1000)
        dt_s = 1.0 if self._last is None else max((now - self._last).total_seconds(), 0.0)
        dt_s = min(dt_s, 60.0)
        first = self._last is None
        self._last = now
        rng = self.rng
        self._episodes(now, dt_s, first)
        desat = self._desat_left_s > 0
        self._desat_left_s = max(0.0, self._desat_left_s - dt_s)
        spo2 = self.spo2.step(rng, dt_s, self.spo2.mean - self._desat_depth if desat else None)
        if desat:
            # A desaturating patient moves fast; let the walk follow within seconds.
            self.spo2.value += (self.spo2.mean - self._desat_depth - spo2) * min(1.0, 0.25 * dt_s)
            spo2 = self.spo2.value
        hr = self.heart_rate.step(rng, dt_s, self.heart_rate.mean + (45 if desat else 0))
        if desat:
            self.heart_rate.value += (self.heart_rate.mean + 45 - hr) * min(1.0, 0.2 * dt_s)
            hr = self.heart_rate.value
        rr = self.resp_rate.step(rng, dt_s, self.resp_rate.mean + (6 if desat else 0))
        pi = self.perfusion.step(rng, dt_s)
        self.temperature.step(rng, dt_s)
        self.systolic.step(rng, dt_s)

        def obs(metric: str, value: float, unit: str) -> Record:
            return Record(Kind.OBSERVATION, metric, value, unit, now, self.patient_id, self.device_id)

        hr_shown = float(round(hr))
        spo2_shown = float(round(spo2))
        pulse = float(round(hr + rng.uniform(-1.0, 1.0)))
        records = [
            obs("MDC_ECG_HEART_RATE", hr_shown, "/min"),
            obs("MDC_PULS_OXIM_PULS_RATE", pulse, "/min"),
            obs("MDC_PULS_OXIM_SAT_O2", spo2_shown, "%"),
            obs("MDC_RESP_RATE", float(round(rr)), "/min"),
            obs("MDC_PULS_OXIM_PERF_REL", round(pi, 2), "%"),
        ]
        if self._next_temperature is None or now >= self._next_temperature:
            records.append(obs("MDC_TEMP_BODY", round(self.temperature.value, 1), "Cel"))
            self._next_temperature = _after(now, self.temperature_every_s)
        if self._next_nibp is None or now >= self._next_nibp:
            sys_ = round(self.systolic.value)
            dia = round(sys_ - self.diastolic_gap)
            records += [
                obs("MDC_PRESS_BLD_NONINV_SYS", float(sys_), "mm[Hg]"),
                obs("MDC_PRESS_BLD_NONINV_DIA", float(dia), "mm[Hg]"),
                obs("MDC_PRESS_BLD_NONINV_MEAN", float(round(dia + (sys_ - dia) / 3)), "mm[Hg]"),
            ]
            self._next_nibp = _after(now, self.nibp_every_s)
        records += self._alarms(now, spo2_shown, hr_shown)
        return records

    def _episodes(self, now: datetime, dt_s: float, first: bool) -> None:
        if self.alarm_every_s is not None:
            if self._next_forced is None:
                self._next_forced = _after(now, self.alarm_every_s)
            elif now >= self._next_forced:
                if self._desat_left_s <= 0:  # forcing must not stretch an episode that is still going on
                    self._start_desat()
                self._next_forced = _after(now, self.alarm_every_s)
        if not first and self._desat_left_s <= 0 and self.rng.random() < dt_s / self.desat_every_s:
            self._start_desat()

    def _start_desat(self) -> None:
        self._desat_left_s = self.rng.uniform(25, 60)
        self._desat_depth = self.rng.uniform(10, 15)

    def _alarms(self, now: datetime, spo2: float, hr: float) -> list[Record]:
        out = []
        low = spo2 < SPO2_LOW_LIMIT
        if low != self._spo2_low:
            self._spo2_low = low
            out.append(
                self._alarm(
                    now,
                    "MDC_PULS_OXIM_SAT_O2",
                    spo2,
                    "%",
                    "MDC_EVT_LO",
                    f"SpO2 {spo2:.0f} < {SPO2_LOW_LIMIT:.0f}" if low else f"SpO2 {spo2:.0f}, back within limit",
                    "high",
                    low,
                )
            )
        high = hr > HEART_RATE_HIGH_LIMIT
        if high != self._hr_high:
            self._hr_high = high
            out.append(
                self._alarm(
                    now,
                    "MDC_ECG_HEART_RATE",
                    hr,
                    "/min",
                    "MDC_EVT_HI",
                    f"HR {hr:.0f} > {HEART_RATE_HIGH_LIMIT:.0f}" if high else f"HR {hr:.0f}, back within limit",
                    "medium",
                    high,
                )
            )
        return out

    def _alarm(
        self,
        now: datetime,
        metric: str,
        value: float,
        unit: str,
        event: str,
        text: str,
        priority: str,
        active: bool,
    ) -> Record:
        state = AlarmState.ACTIVE if active else AlarmState.INACTIVE
        return Record(
            Kind.ALARM,
            metric,
            value,
            unit,
            now,
            self.patient_id,
            self.device_id,
            alarm=AlarmInfo(event, text, priority, state),
        )


def _after(t: datetime, seconds: float) -> datetime:
    return t + timedelta(seconds=seconds)
