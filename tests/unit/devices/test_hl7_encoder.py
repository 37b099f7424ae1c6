"""Property tests: HL7 encode/decode round trip, arbitrary chunking, and hostile input."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from devices.hl7 import Hl7Decoder
from devices.hl7_encoder import encode_oru_r01, encode_oru_r40, format_nm
from devices.hl7_message import Delimiters
from devices.mllp import frame
from devices.records import AlarmInfo, AlarmState, DecodeError, DecodeResult, Kind, Record

TZ = ZoneInfo("America/New_York")
DEVICE = "bed-1"
SETTINGS = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])

times = st.datetimes(min_value=datetime(2000, 1, 1), max_value=datetime(2099, 12, 31), timezones=st.just(UTC)).map(
    lambda t: t.replace(microsecond=t.microsecond // 1000 * 1000)
)
numbers = st.floats(allow_nan=False, allow_infinity=False, allow_subnormal=False, width=64)
metrics = st.sampled_from(
    [
        "MDC_PULS_OXIM_SAT_O2",
        "MDC_ECG_HEART_RATE",
        "MDC_PRESS_BLD_NONINV_SYS",
        "MDC_SOMETHING_UNMAPPED",
        "8867-4^Heart rate^LN",
        "X|Y^Z~&\\",
    ]
)
units = st.sampled_from([None, "%", "/min", "mm[Hg]", "Cel", "kPa", "{beats}/min", "m&m"])
patients = st.one_of(
    st.none(), st.text(st.characters(codec="utf-8", exclude_categories=["Cs", "Cc"]), min_size=1, max_size=12)
)
texts = st.text(st.characters(codec="utf-8", exclude_categories=["Cs"]), max_size=30)


@st.composite
def observations(draw: st.DrawFn) -> list[Record]:
    patient = draw(patients)
    out = []
    for _ in range(draw(st.integers(1, 6))):
        if draw(st.booleans()):
            out.append(
                Record(Kind.OBSERVATION, draw(metrics), draw(numbers), draw(units), draw(times), patient, DEVICE)
            )
        else:
            out.append(
                Record(
                    Kind.WAVEFORM,
                    draw(metrics),
                    None,
                    draw(units),
                    draw(times),
                    patient,
                    DEVICE,
                    samples=tuple(draw(st.lists(numbers, min_size=1, max_size=20))),
                    sample_period_ms=draw(st.one_of(st.none(), st.floats(0.5, 1000))),
                )
            )
    return out


@st.composite
def alarms(draw: st.DrawFn) -> list[Record]:
    patient = draw(patients)
    return [
        Record(
            Kind.ALARM,
            draw(metrics),
            draw(st.one_of(st.none(), numbers)),
            draw(units),
            draw(times),
            patient,
            DEVICE,
            alarm=AlarmInfo(
                draw(st.sampled_from(["MDC_EVT_HI", "MDC_EVT_LO", "MDC_EVT_BATT_LO"])),
                draw(texts),
                draw(st.sampled_from(["high", "medium", "low", "none"])),
                draw(st.sampled_from(list(AlarmState))),
            ),
        )
        for _ in range(draw(st.integers(1, 3)))
    ]


delimiters = st.sampled_from([Delimiters(), Delimiters("#", "*", "@", "!", "%")])


def decode_chunks(data: bytes, cuts: list[int]) -> DecodeResult:
    decoder = Hl7Decoder(DEVICE, TZ)
    result = DecodeResult()
    last = 0
    for cut in sorted(c % (len(data) + 1) for c in cuts):
        result.extend(decoder.feed(data[last:cut]))
        last = max(last, cut)
    result.extend(decoder.feed(data[last:]))
    result.extend(decoder.flush())
    return result


@SETTINGS
@given(observations(), alarms(), delimiters, st.sampled_from(["\r", "\n", "\r\n"]), st.booleans())
def test_decode_of_encode_is_identity(
    obs: list[Record], alarm: list[Record], d: Delimiters, end: str, mllp: bool
) -> None:
    one = encode_oru_r01(obs, control_id="1", delimiters=d, segment_end=end)
    two = encode_oru_r40(alarm, control_id="2", delimiters=d, segment_end=end)
    stream = frame(one) + frame(two) if mllp else one + two
    result = decode_chunks(stream, [])
    assert result.errors == []
    assert result.records == obs + alarm
    assert len(result.replies) == 2


@SETTINGS
@given(observations(), st.lists(st.integers(0, 10_000), max_size=30), st.booleans())
def test_arbitrary_chunking_gives_the_same_records(obs: list[Record], cuts: list[int], mllp: bool) -> None:
    message = encode_oru_r01(obs, control_id="7")
    stream = (frame(message) * 3) if mllp else message * 3
    whole = decode_chunks(stream, [])
    assert decode_chunks(stream, cuts).records == whole.records == obs * 3


@SETTINGS
@given(st.binary(max_size=3000), st.lists(st.integers(0, 3000), max_size=20))
def test_random_bytes_never_raise(data: bytes, cuts: list[int]) -> None:
    result = decode_chunks(data, cuts)
    assert all(isinstance(e, DecodeError) for e in result.errors)


garbage = st.binary(max_size=200).map(lambda b: b.replace(b"\x0b", b"").replace(b"\x1c", b"") + b"\r")


@SETTINGS
@given(st.lists(st.tuples(observations(), garbage), min_size=1, max_size=4), st.lists(st.integers(0, 5000)))
def test_valid_frames_between_garbage_are_all_recovered(
    parts: list[tuple[list[Record], bytes]], cuts: list[int]
) -> None:
    stream = b"".join(g + frame(encode_oru_r01(obs, control_id=str(i))) for i, (obs, g) in enumerate(parts))
    result = decode_chunks(stream, cuts)
    assert result.records == [r for obs, _ in parts for r in obs]


@SETTINGS
@given(st.binary(max_size=500), observations(), st.lists(st.integers(0, 5000)))
def test_random_bytes_interleaved_with_frames_never_raise(noise: bytes, obs: list[Record], cuts: list[int]) -> None:
    m = frame(encode_oru_r01(obs, control_id="1"))
    result = decode_chunks(noise + m + noise + m, cuts)
    assert all(isinstance(e, DecodeError) for e in result.errors)


def test_nm_formatting_never_uses_an_exponent() -> None:
    assert format_nm(1e-20) == "0.00000000000000000001"
    assert format_nm(97.0) == "97.0"
    assert float(format_nm(1.7976931348623157e308)) == 1.7976931348623157e308


def test_simulator_style_timestamps_survive_with_millisecond_precision() -> None:
    t = datetime(2026, 11, 21, 14, 30, 55, 123000, tzinfo=UTC)
    rec = Record(Kind.OBSERVATION, "MDC_PULS_OXIM_SAT_O2", 97.0, "%", t, None, DEVICE)
    encoded = encode_oru_r01([rec], control_id="1")
    assert b"|20261121143055.123+0000" in encoded
    assert decode_chunks(encoded, []).records[0].time == t
    assert decode_chunks(encoded, []).records[0].time + timedelta(0) == t
