import contextlib
import json
import zlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway import wire
from gateway.wire import Ack, Batch, Lane, WireError, WireRecord


def record(seq: int, **kw: object) -> WireRecord:
    base = dict(seq=seq, kind="observation", metric="MDC_PULS_OXIM_SAT_O2", value=97.0, unit="%",
                time_ms=1_795_300_000_000 + seq, recv_ms=1_795_300_000_050 + seq, patient_id="P1",
                device_id="oxi-1", extra=None)
    base.update(kw)
    return WireRecord(**base)  # type: ignore[arg-type]


def test_batch_round_trip_keeps_every_field() -> None:
    batch = Batch("gw-a", "clinic-a", Lane.ALARM, 123, [
        record(1), record(2, kind="alarm", value=None, extra={"alarm": {"event": "MDC_EVT_LO"}}),
        record(5, patient_id=None, unit=None, metric="其他"),
    ])
    assert wire.decode_batch(wire.encode_batch(batch)) == batch


records_strategy = st.lists(
    st.builds(
        record,
        seq=st.integers(1, 2**40),
        value=st.one_of(st.none(), st.floats(allow_nan=False, allow_infinity=False, width=64)),
        patient_id=st.one_of(st.none(), st.text(max_size=20)),
        device_id=st.text(max_size=20),
        time_ms=st.integers(0, 2**45),
    ),
    min_size=1, max_size=30, unique_by=lambda r: r.seq,
)


@given(records_strategy)
def test_decode_encode_is_identity(records: list[WireRecord]) -> None:
    records = sorted(records, key=lambda r: r.seq)
    batch = Batch("gw", "c", Lane.VITALS, 1, records)
    assert wire.decode_batch(wire.encode_batch(batch)) == batch


@given(st.binary(max_size=300))
def test_random_payloads_raise_only_wire_error(payload: bytes) -> None:
    with contextlib.suppress(WireError):
        wire.decode_batch(payload)


def _raw(doc: object) -> bytes:
    return bytes([wire.BATCH_VERSION]) + zlib.compress(json.dumps(doc).encode())


@pytest.mark.parametrize(("doc", "message"), [
    ({"gw": "g", "clinic": "c", "lane": 9, "sent_ms": 1, "rows": [[1]]}, "lane"),
    ({"gw": "g", "clinic": "c", "lane": 2, "sent_ms": 1, "rows": []}, "rows"),
    ({"gw": "g", "clinic": "c", "lane": 2, "sent_ms": 1, "rows": [[1, "bogus", "m", 1, None, 1, 1, None, "d", None]]},
     "kind"),
    ({"gw": "g", "clinic": "c", "lane": 2, "sent_ms": 1, "rows": [[0, "observation", "m", 1, None, 1, 1, None, "d",
                                                                    None]]}, "seq"),
    ({"gw": "g", "lane": 2, "sent_ms": 1, "rows": []}, "clinic"),
    ({"gw": "g", "clinic": "c", "lane": 2, "sent_ms": 1, "rows": [
        [2, "observation", "m", 1, None, 1, 1, None, "d", None],
        [2, "observation", "m", 1, None, 1, 1, None, "d", None]]}, "increasing"),
])
def test_bad_batches_name_the_field(doc: object, message: str) -> None:
    with pytest.raises(WireError, match=message):
        wire.decode_batch(_raw(doc))


def test_batch_version_is_checked() -> None:
    with pytest.raises(WireError, match="version 7 not supported"):
        wire.decode_batch(b"\x07" + zlib.compress(b"{}"))


def test_ack_round_trip_and_validation() -> None:
    ack = Ack([(Lane.ALARM, 3, 3), (Lane.VITALS, 1, 500)], 500, 42)
    assert wire.decode_ack(wire.encode_ack(ack)) == ack
    with pytest.raises(WireError, match="first_seq > last_seq"):
        wire.decode_ack(b'{"v":1,"ranges":[[2,5,1]],"committed_seq":1,"hq_ms":1}')
    with pytest.raises(WireError, match="version"):
        wire.decode_ack(b'{"v":99,"ranges":[],"committed_seq":1,"hq_ms":1}')


def test_status_round_trip() -> None:
    status = wire.Status(wire.GatewayState.ONLINE, "clinic-a", 10, "0.1.0", 5,
                         {Lane.ALARM: wire.LaneBacklog(0, None), Lane.VITALS: wire.LaneBacklog(7, 3)},
                         [wire.DeviceStatus("oxi", "masimo", "/dev/ttyUSB0", "ok", 9)])
    decoded = wire.decode_status(wire.encode_status(status))
    assert decoded == status
    assert decoded.backlog_total == 7


def test_topics_confine_each_gateway_to_its_prefix() -> None:
    assert wire.data_topic("gw-a") == "clinic/gw-a/up/data"
    assert wire.ack_topic("gw-a").startswith("clinic/gw-a/")
    assert wire.gateway_of_topic("clinic/gw-a/up/status") == "gw-a"
    with pytest.raises(WireError):
        wire.gateway_of_topic("elsewhere/gw-a/up/data")
    assert not wire.valid_gateway_id("a/b")
    assert not wire.valid_gateway_id("+")


@given(st.recursive(st.none() | st.booleans() | st.integers() | st.text(max_size=5),
                    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children,
                                                                                      max_size=4),
                    max_leaves=12))
def test_any_json_status_raises_only_wire_error(doc: object) -> None:
    if isinstance(doc, dict):
        doc = {"v": 1, "state": "online", "clinic": "c", "time_ms": 1, **doc}
    with contextlib.suppress(WireError):
        wire.decode_status(json.dumps(doc).encode())


def test_status_drain_rate_is_optional_and_validated() -> None:
    status = wire.Status(wire.GatewayState.ONLINE, "c", 1, drain_rate_per_s=123.4)
    assert wire.decode_status(wire.encode_status(status)).drain_rate_per_s == 123.4
    assert wire.decode_status(wire.encode_status(wire.Status(wire.GatewayState.ONLINE, "c", 1))).drain_rate_per_s \
        is None
    with pytest.raises(WireError, match="drain"):
        wire.decode_status(b'{"v":1,"state":"online","clinic":"c","time_ms":1,"drain":-1}')


def test_batch_floor_round_trips_and_defaults_to_zero_for_older_senders() -> None:
    batch = Batch("gw-a", "clinic-a", Lane.VITALS, 123, [record(7)], floor=5)
    assert wire.decode_batch(wire.encode_batch(batch)).floor == 5
    doc = {"gw": "gw-a", "clinic": "c", "lane": 2, "sent_ms": 1, "rows": [record(7).row()]}
    assert wire.decode_batch(b"\x01" + zlib.compress(json.dumps(doc).encode())).floor == 0
    with pytest.raises(WireError, match="'floor'"):
        wire.decode_batch(b"\x01" + zlib.compress(json.dumps({**doc, "floor": -1}).encode()))


def test_replay_request_round_trip_and_errors() -> None:
    replay = wire.Replay("restore-1795300000000", 4242, 1_795_300_000_000)
    assert wire.decode_replay(wire.encode_replay(replay)) == replay
    assert wire.replay_topic("gw-a") == "clinic/gw-a/down/replay"
    with pytest.raises(WireError, match="from_seq"):
        wire.decode_replay(b'{"v":1,"request_id":"r","from_seq":-1,"hq_ms":1}')
    with pytest.raises(WireError, match="request_id"):
        wire.decode_replay(b'{"v":1,"request_id":"","from_seq":1,"hq_ms":1}')
    with pytest.raises(WireError, match="missing field 'from_seq'"):
        wire.decode_replay(b'{"v":1,"request_id":"r","hq_ms":1}')


def test_status_carries_the_version_of_the_hq_managed_settings() -> None:
    status = wire.Status(wire.GatewayState.ONLINE, "clinic-a", 1, "1.0", config_version=4)
    assert wire.decode_status(wire.encode_status(status)).config_version == 4
    plain = wire.encode_status(wire.Status(wire.GatewayState.ONLINE, "clinic-a", 1))
    assert b'"config"' not in plain and wire.decode_status(plain).config_version == 0  # older gateways: 0
    doc = json.loads(plain)
    doc["config"] = -1
    with pytest.raises(wire.WireError, match="'config'"):
        wire.decode_status(json.dumps(doc).encode())
