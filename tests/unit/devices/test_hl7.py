"""PCD-01/PCD-04 decoder: framing detection, fallbacks, errors and ACKs, on captured-style messages."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

from devices.hl7 import Hl7Decoder
from devices.mllp import frame
from devices.records import AlarmState, DecodeResult, Kind

DATA = Path(__file__).parents[2] / "data" / "devices"
BERLIN = ZoneInfo("Europe/Berlin")
NOW = datetime(2026, 11, 21, 13, 45, tzinfo=UTC)


def decode(data: bytes, *, now: datetime | None = None, step: int | None = None, **kw: object) -> DecodeResult:
    decoder = Hl7Decoder("bed-12", BERLIN, **kw)  # type: ignore[arg-type]
    result = DecodeResult()
    if step is None:
        result.extend(decoder.feed(data, now))
    else:
        for i in range(0, len(data), step):
            result.extend(decoder.feed(data[i : i + step], now))
    result.extend(decoder.flush(now))
    return result


def msg(*segments: str, end: str = "\r") -> bytes:
    return (end.join(segments) + end).encode()


MSH = "MSH|^~\\&|MON|ICU|GW|CLINIC|20261121143055+0100||ORU^R01^ORU_R01|C1|P|2.6"
OBR = "OBR|1|||182777000^monitoring of patient^SNOMED-CT|||20261121143050+0100"


def obx(
    n: int,
    value: str,
    ident: str = "150456^MDC_PULS_OXIM_SAT_O2^MDC",
    unit: str = "262688^MDC_DIM_PERCENT^MDC",
    time: str = "20261121143055+0100",
    vtype: str = "NM",
    status: str = "R",
) -> str:
    return f"OBX|{n}|{vtype}|{ident}|1.1.1.{n}|{value}|{unit}|||||{status}|||{time}"


def test_captured_pcd01_over_mllp() -> None:
    r = decode((DATA / "pcd01_mllp.hl7").read_bytes())
    assert r.errors == []
    assert len(r.records) == 11
    first = r.records[0]
    assert (first.kind, first.metric, first.value, first.unit) == (Kind.OBSERVATION, "MDC_PULS_OXIM_SAT_O2", 97.0, "%")
    assert first.time == datetime(2026, 11, 21, 13, 30, 55, tzinfo=UTC)
    assert first.patient_id == "MRN-4711"
    assert first.device_id == "bed-12"
    metrics = [rec.metric for rec in r.records]
    assert "MDC_PRESS_BLD_NONINV_MEAN" in metrics and "MDC_TEMP_BODY" in metrics
    temp = next(rec for rec in r.records if rec.metric == "MDC_TEMP_BODY")
    assert (temp.value, temp.unit) == (36.8, "Cel")
    # Second message: numeric code without reference id, no OBX-14 (falls back to OBR-7), unknown segment.
    spo2 = r.records[9]
    assert (spo2.metric, spo2.value, spo2.unit) == ("MDC_PULS_OXIM_SAT_O2", 96.0, "%")
    assert spo2.time == datetime(2026, 11, 21, 13, 31, 50, tzinfo=UTC)
    assert r.records[10].metric == "MDC_CONC_AWAY_CO2_ET"
    assert len(r.replies) == 2
    assert all(reply.startswith(b"\x0b") and reply.endswith(b"\x1c\r") for reply in r.replies)


def test_ack_swaps_applications_and_echoes_control_id() -> None:
    r = decode(frame(msg(MSH, OBR, obx(1, "97"))))
    ack = r.replies[0][1:-2].decode().split("\r")
    assert ack[0].split("|")[2:6] == ["GW", "CLINIC", "MON", "ICU"]
    assert ack[0].split("|")[8] == "ACK^R01^ACK"
    assert ack[1] == "MSA|AA|C1"


def test_bare_messages_with_cr_lf_and_crlf_segment_ends() -> None:
    for end in ("\r", "\n", "\r\n"):
        stream = msg(MSH, OBR, obx(1, "97"), end=end) + msg(MSH.replace("C1", "C2"), OBR, obx(1, "96"), end=end)
        for step in (None, 1, 7):
            r = decode(stream, step=step)
            assert [rec.value for rec in r.records] == [97.0, 96.0], (end, step)
            assert r.errors == []
            assert [reply.split(b"\r")[1] for reply in r.replies] == [b"MSA|AA|C1", b"MSA|AA|C2"]
            assert not r.replies[0].startswith(b"\x0b")


def test_bare_message_ends_at_blank_line_without_flush() -> None:
    decoder = Hl7Decoder("bed-12", BERLIN)
    r = decoder.feed(msg(MSH, OBR, obx(1, "97"), end="\r\n") + b"\r\n")
    assert [rec.value for rec in r.records] == [97.0]
    assert decoder.framing == "bare"


def test_pending_bare_message_is_emitted_on_flush() -> None:
    decoder = Hl7Decoder("bed-12", BERLIN)
    assert decoder.feed(msg(MSH, OBR, obx(1, "97"))).records == []
    assert [rec.value for rec in decoder.flush().records] == [97.0]


def test_garbage_between_mllp_frames_is_reported_once_and_frames_survive() -> None:
    m = frame(msg(MSH, OBR, obx(1, "97")))
    r = decode(m + b"\x00\xff line noise \xfe" * 20 + m, step=3)
    assert [rec.value for rec in r.records] == [97.0, 97.0]
    assert len(r.errors) == 1


def test_truncated_message_at_eof_is_reported() -> None:
    m = frame(msg(MSH, OBR, obx(1, "97")))
    r = decode(m + m[:40])
    assert [rec.value for rec in r.records] == [97.0]
    assert len(r.errors) == 1 and "truncated" in r.errors[0].reason


def test_escape_sequences_and_custom_delimiters() -> None:
    custom = msg(
        "MSH#*@!%#MON#ICU#GW#CLINIC#20261121143055+0100##ORU*R01*ORU_R01#C9#P#2.6",
        "PID###MRN!S!42",
        "OBX#1#NM#150456*MDC_PULS_OXIM_SAT_O2*MDC#1.1#97.5#262688*MDC_DIM_PERCENT*MDC#####R###20261121143055+0100",
        "OBX#2#NM#1234*Vendor!F!thing*LOCAL#1.2#7##",
    )
    r = decode(custom)
    assert r.errors == []
    assert [(rec.metric, rec.value, rec.unit) for rec in r.records] == [
        ("MDC_PULS_OXIM_SAT_O2", 97.5, "%"),
        ("1234^Vendor#thing^LOCAL", 7.0, None),
    ]
    assert r.records[0].patient_id == "MRN*42"
    assert r.replies[0].startswith(b"MSH#*@!%#GW#CLINIC#MON#ICU#")


def test_time_falls_back_from_obx14_to_obr7_to_msh7() -> None:
    r = decode(msg(MSH, OBR, obx(1, "1", time=""), "OBR|2", obx(2, "2", time=""), obx(3, "3")))
    assert [rec.time.strftime("%H:%M:%S") for rec in r.records] == ["13:30:50", "13:30:55", "13:30:55"]


def test_times_without_offset_are_read_in_the_device_zone() -> None:
    r = decode(msg(MSH, obx(1, "97", time="20260701120000")))
    assert r.records[0].time == datetime(2026, 7, 1, 10, 0, tzinfo=UTC)
    assert r.records[0].time.tzinfo is UTC


def test_missing_msh7_uses_receive_time_or_rejects_the_message() -> None:
    no_time = MSH.replace("20261121143055+0100", "")
    assert decode(msg(no_time, obx(1, "97", time="")), now=NOW).records[0].time == NOW
    r = decode(msg(no_time, obx(1, "97", time="")))
    assert r.records == []
    assert len(r.errors) == 1 and "MSH-7" in r.errors[0].reason
    assert b"MSA|AE|C1" in r.replies[0] and b"\rERR|" in r.replies[0]


def test_bad_obx_value_is_reported_while_the_rest_of_the_message_yields() -> None:
    r = decode(
        msg(
            MSH,
            OBR,
            obx(1, "abc"),
            obx(2, "72", "149530^MDC_PULS_OXIM_PULS_RATE^MDC", "264864^^MDC"),
            obx(3, ""),
            obx(4, "1e5"),
            obx(5, "98", time="notatime"),
        )
    )
    assert [(rec.metric, rec.value, rec.unit) for rec in r.records] == [("MDC_PULS_OXIM_PULS_RATE", 72.0, "/min")]
    reasons = [e.reason for e in r.errors]
    assert reasons[0] == "OBX-5 'abc' of MDC_PULS_OXIM_SAT_O2 is not a number; expected NM value"
    assert "empty" in reasons[1] and "'1e5'" in reasons[2] and "OBX-14 'notatime'" in reasons[3]
    assert all(e.segment == "OBX" for e in r.errors)
    assert r.errors[0].offset == len(MSH) + len(OBR) + 2
    assert b"MSA|AA|C1" in r.replies[0]


def test_status_x_is_skipped_and_unknown_segments_and_types_ignored() -> None:
    r = decode(msg(MSH, "ZZZ|1|2", OBR, obx(1, "", status="X"), obx(2, "text", vtype="ST"), obx(3, "97")))
    assert [rec.value for rec in r.records] == [97.0]
    assert r.errors == []


def test_na_value_is_a_waveform_with_sample_period() -> None:
    r = decode(
        msg(
            MSH,
            obx(1, "1^2.5^-3", "150452^MDC_PULS_OXIM_PLETH^MDC", "", vtype="NA"),
            obx(2, "8", "67981^MDC_ATTR_TIME_PD_SAMP^MDC", "264338^MDC_DIM_MILLI_SEC^MDC"),
            obx(3, "4~5~6", "131330^^MDC", "266418^^MDC", vtype="NA"),
        )
    )
    assert r.errors == []
    wave, ecg = r.records
    assert (wave.kind, wave.samples, wave.sample_period_ms, wave.value) == (Kind.WAVEFORM, (1.0, 2.5, -3.0), 8.0, None)
    assert (ecg.metric, ecg.samples, ecg.unit) == ("MDC_ECG_ELEC_POTL_II", (4.0, 5.0, 6.0), "mV")


def test_pcd04_alarm() -> None:
    r = decode((DATA / "pcd04_alarm_cr.hl7").read_bytes())
    assert r.errors == []
    (alarm,) = r.records
    assert (alarm.kind, alarm.metric, alarm.value, alarm.unit) == (Kind.ALARM, "MDC_PULS_OXIM_SAT_O2", 85.0, "%")
    assert alarm.alarm is not None
    assert alarm.alarm.event == "MDC_EVT_LO"
    assert alarm.alarm.text == "SpO2 Low 85 < 90"
    assert alarm.alarm.priority == "medium"
    assert alarm.alarm.state is AlarmState.ACTIVE
    assert alarm.time == datetime(2026, 11, 21, 13, 31, 58, tzinfo=UTC)
    assert b"ACK^R40^ACK" in r.replies[0]


def test_pcd04_generic_alarm_with_event_in_value_and_priority_attribute() -> None:
    r = decode(
        msg(
            "MSH|^~\\&|MINDRAY|ICU|||20260124124738+0800||ORU^R40|A7|P|2.6",
            "OBX|1|CWE|196616^MDC_EVT_ALARM^MDC|1.7.0.196680.1|196880^MDC_EVT_LEAD_OFF^MDC|||A~PL~ST|||R|||20260124124738+0800",
            "OBX|2|ST|68480^MDC_ATTR_ALERT_SOURCE^MDC|1.7.0.196680.2|131330^MDC_ECG_ELEC_POTL_II^MDC||||||R",
            "OBX|3|ST|68481^MDC_ATTR_EVENT_PHASE^MDC|1.7.0.196680.3|end",
            "OBX|4|ST|68482^MDC_ATTR_ALARM_STATE^MDC|1.7.0.196680.4|inactive",
            "OBX|6|ST|68484^MDC_ATTR_ALARM_PRIORITY^MDC|1.7.0.196680.6|PH",
            "OBX|8|ST|68546^MDC_ATTR_ALERT_TEXT^MDC|1.7.0.196680.8|ECG lead off",
        )
    )
    (alarm,) = r.records
    assert alarm.metric == "MDC_ECG_ELEC_POTL_II"
    assert alarm.alarm is not None
    assert (alarm.alarm.event, alarm.alarm.text, alarm.alarm.priority, alarm.alarm.state) == (
        "MDC_EVT_LEAD_OFF",
        "ECG lead off",
        "high",
        AlarmState.INACTIVE,
    )


def test_unsupported_message_type_is_rejected_with_ar() -> None:
    r = decode(msg(MSH.replace("ORU^R01^ORU_R01", "ADT^A01"), "PID|||1"))
    assert r.records == [] and len(r.errors) == 1
    assert b"MSA|AR|C1" in r.replies[0]


def test_incoming_ack_is_neither_decoded_nor_acknowledged() -> None:
    r = decode(msg("MSH|^~\\&|GW||MON||20261121||ACK^R01^ACK|C1|P|2.6", "MSA|AA|C1"))
    assert (r.records, r.errors, r.replies) == ([], [], [])


def test_unreadable_msh_is_reported_without_ack() -> None:
    r = decode(frame(b"MSH|||bad\rOBX|1"))
    assert len(r.errors) == 1 and r.replies == []


def test_oversize_message_is_rejected_in_both_framings() -> None:
    big = msg(MSH, *[obx(i, "97") for i in range(1, 200)])
    small = msg(MSH, OBR, obx(1, "50"))
    for stream in (frame(big) + frame(small), big + small):
        r = decode(stream, step=512, max_message_bytes=2048)
        assert [rec.value for rec in r.records] == [50.0]
        assert len(r.errors) == 1 and "exceeds" in r.errors[0].reason


def test_leading_noise_before_bare_message_is_reported() -> None:
    r = decode(b"noise\r\n" + msg(MSH, obx(1, "97")))
    assert [rec.value for rec in r.records] == [97.0]
    assert len(r.errors) == 1


def test_input_without_any_message_is_reported_once() -> None:
    r = decode(b"\xff" * 10000, step=100)
    assert r.records == [] and len(r.errors) == 1


def test_noise_that_looks_like_a_bare_message_does_not_hide_mllp_frames() -> None:
    """An 'MSH' in line noise before the first VT used to lock the stream into bare framing."""
    from devices.hl7_encoder import encode_oru_r01
    from devices.mllp import frame
    from devices.records import Kind, Record

    when = datetime(2026, 11, 21, 8, 0, tzinfo=UTC)
    obs = [Record(Kind.OBSERVATION, "MDC_PULS_OXIM_SAT_O2", 97.0, "%", when, "P1", "bed-1")]
    stream = b"MSH\r" + frame(encode_oru_r01(obs, control_id="1")) + frame(encode_oru_r01(obs, control_id="2"))
    decoder = Hl7Decoder("bed-1", ZoneInfo("UTC"))
    result = decoder.feed(stream)
    assert result.records == obs * 2
    assert decoder.framing == "mllp"
    assert len(result.errors) == 1 and result.errors[0].offset == 0


def test_acks_can_be_switched_off_for_devices_nobody_answers() -> None:
    from devices.hl7_encoder import encode_oru_r01
    from devices.records import Record

    when = datetime(2026, 11, 21, 8, 0, tzinfo=UTC)
    message = frame(encode_oru_r01([Record(Kind.OBSERVATION, "MDC_PULS_OXIM_SAT_O2", 97.0, "%", when, "P1", "b")],
                                   control_id="1"))
    quiet = Hl7Decoder("b", ZoneInfo("UTC"), acks=False).feed(message)
    assert len(quiet.records) == 1 and quiet.replies == []
    assert len(Hl7Decoder("b", ZoneInfo("UTC")).feed(message).replies) == 1
