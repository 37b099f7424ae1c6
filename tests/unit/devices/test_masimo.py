"""Masimo ASCII decoder and line encoder."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

from hypothesis import given, settings
from hypothesis import strategies as st

from devices.masimo import MasimoDecoder, MasimoVariant, encode_line
from devices.records import AlarmState, DecodeError, DecodeResult, Kind, Record

DATA = Path(__file__).parents[2] / "data" / "devices"
TZ = ZoneInfo("America/Chicago")
NOW = datetime(2026, 11, 21, 20, 0, tzinfo=UTC)


def decode(data: bytes, now: datetime | None = NOW, step: int | None = None) -> DecodeResult:
    decoder = MasimoDecoder("ox-1", TZ)
    result = DecodeResult()
    chunks = [data] if step is None else [data[i : i + step] for i in range(0, len(data), step)]
    for chunk in chunks:
        result.extend(decoder.feed(chunk, now))
    result.extend(decoder.flush(now))
    return result


def test_radical7_capture_with_alarm_edges_and_dashes() -> None:
    r = decode((DATA / "masimo_radical7.txt").read_bytes())
    assert r.errors == []
    obs = [(x.metric, x.value, x.unit) for x in r.records if x.kind is Kind.OBSERVATION]
    assert obs[:3] == [
        ("MDC_PULS_OXIM_SAT_O2", 97.0, "%"),
        ("MDC_PULS_OXIM_PULS_RATE", 71.0, "/min"),
        ("MDC_PULS_OXIM_PERF_REL", 4.8, "%"),
    ]
    assert len(obs) == 9  # the sensor-off line with dashes yields nothing
    first = r.records[0]
    assert first.time == datetime(2026, 11, 21, 20, 30, 55, tzinfo=UTC)
    assert (first.patient_id, first.device_id) == (None, "ox-1")
    alarms = [x for x in r.records if x.kind is Kind.ALARM]
    assert len(alarms) == 2  # silencing (0x0020) on the third line is not a new alarm
    on, off = alarms
    assert on.alarm is not None and off.alarm is not None
    assert (on.metric, on.value, on.alarm.event, on.alarm.state) == (
        "MDC_PULS_OXIM_SAT_O2",
        89.0,
        "MDC_EVT_LO",
        AlarmState.ACTIVE,
    )
    assert (off.alarm.event, off.alarm.state) == ("MDC_EVT_LO", AlarmState.INACTIVE)
    assert on.alarm.text == "SpO2 low alarm limit violated"


def test_radical5_and_rad8_variants_and_byte_by_byte_feeding() -> None:
    data = (DATA / "masimo_radical5_rad8.txt").read_bytes()
    r = decode(data, step=1)
    assert r.errors == []
    assert [x.value for x in r.records] == [97.0, 64.0, 11.82, 96.0, 65.0, 11.5]


def test_line_without_date_uses_receive_time_or_is_rejected() -> None:
    line = b"SN=1 SPO2=095% BPM=060 PI=01.00% ALARM=0000\r"
    assert {x.time for x in decode(line).records} == {NOW}
    r = decode(line, now=None)
    assert r.records == [] and len(r.errors) == 1 and "no date" in r.errors[0].reason


def test_unrecognisable_and_malformed_lines_are_errors() -> None:
    r = decode(b"hello world\nSPO2=9x% BPM=070\n11/21/26 25:00:00 SPO2=097%\nALARM=zz SPO2=097\n")
    assert [x.value for x in r.records] == [70.0, 97.0]
    assert len(r.errors) == 4
    assert "no recognisable field" in r.errors[0].reason
    assert r.errors[1].offset == len(b"hello world\n")


def test_alarm_flood_is_edge_triggered() -> None:
    lines = [encode_line(NOW, TZ, spo2=85, bpm=130, pi=1.0, alarm=0x0016) for _ in range(10)]
    lines.append(encode_line(NOW, TZ, spo2=85, bpm=100, pi=1.0, alarm=0x0012))
    lines.append(encode_line(NOW, TZ, spo2=95, bpm=100, pi=1.0, alarm=0x0000))
    alarms = [x for x in decode(b"".join(lines)).records if x.kind is Kind.ALARM]
    states = [(x.metric, x.alarm.event, x.alarm.state) for x in alarms if x.alarm is not None]
    assert states == [
        ("MDC_PULS_OXIM_SAT_O2", "MDC_EVT_LO", AlarmState.ACTIVE),
        ("MDC_PULS_OXIM_PULS_RATE", "MDC_EVT_HI", AlarmState.ACTIVE),
        ("MDC_PULS_OXIM_PULS_RATE", "MDC_EVT_HI", AlarmState.INACTIVE),
        ("MDC_PULS_OXIM_SAT_O2", "MDC_EVT_LO", AlarmState.INACTIVE),
    ]


def test_unknown_alarm_bits_are_named_by_hex() -> None:
    (alarm,) = [
        x for x in decode(encode_line(NOW, TZ, spo2=97, bpm=70, pi=1, alarm=0x8000)).records if x.kind is Kind.ALARM
    ]
    assert alarm.alarm is not None
    assert (alarm.alarm.event, alarm.alarm.text, alarm.alarm.priority) == (
        "MASIMO_ALARM_8000",
        "alarm bits 0x8000",
        "medium",
    )


def test_oversize_line_is_rejected_without_unbounded_buffering() -> None:
    decoder = MasimoDecoder("ox-1", TZ, max_line_bytes=200)
    errors = []
    for _ in range(50):
        errors += decoder.feed(b"X" * 64, NOW).errors
        assert len(decoder._buf) <= 264
    r = decoder.feed(b"\r\n" + encode_line(NOW, TZ, spo2=97, bpm=70, pi=1.0), NOW)
    assert len(errors) == 1
    assert [x.value for x in r.records] == [97.0, 70.0, 1.0]


second_times = st.datetimes(
    min_value=datetime(2001, 1, 1), max_value=datetime(2098, 12, 31), timezones=st.just(UTC)
).map(lambda t: t.replace(microsecond=0))
maybe = st.one_of(st.none(), st.integers(0, 250))


@settings(max_examples=200, deadline=None)
@given(
    second_times,
    maybe,
    maybe,
    st.one_of(st.none(), st.integers(0, 9999).map(lambda n: n / 100)),
    st.sampled_from(list(MasimoVariant)),
    st.sampled_from([b"\r", b"\n", b"\r\n"]),
)
def test_decode_of_encode_is_identity(
    t: datetime, spo2: int | None, bpm: int | None, pi: float | None, variant: MasimoVariant, end: bytes
) -> None:
    tz = ZoneInfo("UTC") if variant is MasimoVariant.NO_DATE else TZ
    line = encode_line(t, tz, spo2=spo2, bpm=bpm, pi=pi, variant=variant, line_end=end)
    r = decode(line, now=t)
    expected = [
        Record(Kind.OBSERVATION, metric, float(v), unit, t, None, "ox-1")
        for metric, v, unit in [
            ("MDC_PULS_OXIM_SAT_O2", spo2, "%"),
            ("MDC_PULS_OXIM_PULS_RATE", bpm, "/min"),
            ("MDC_PULS_OXIM_PERF_REL", pi, "%"),
        ]
        if v is not None
    ]
    assert r.errors == []
    assert r.records == expected


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=2000), st.integers(1, 50))
def test_random_bytes_never_raise(data: bytes, step: int) -> None:
    r = decode(data, step=step)
    assert all(isinstance(e, DecodeError) for e in r.errors)
