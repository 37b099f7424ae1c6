"""MLLP framer: frames, garbage runs, truncation and size limits."""

from devices.mllp import Frame, MllpFramer, frame
from devices.records import DecodeError


def _feed_all(framer: MllpFramer, data: bytes, step: int | None = None) -> list[Frame | DecodeError]:
    out: list[Frame | DecodeError] = []
    if step is None:
        out += framer.feed(data)
    else:
        for i in range(0, len(data), step):
            out += framer.feed(data[i : i + step])
    return out + framer.flush()


def test_frames_are_found_whole_and_byte_by_byte() -> None:
    stream = frame(b"one") + frame(b"two") + b"\n" + frame(b"three")
    for step in (None, 1, 2, 5):
        items = _feed_all(MllpFramer(), stream, step)
        assert [i.payload for i in items if isinstance(i, Frame)] == [b"one", b"two", b"three"]
        assert not [i for i in items if isinstance(i, DecodeError)]


def test_frame_offsets_point_at_the_start_byte() -> None:
    items = _feed_all(MllpFramer(), frame(b"a") + b"xx" + frame(b"b"))
    frames = [i for i in items if isinstance(i, Frame)]
    assert [f.offset for f in frames] == [0, 6]


def test_garbage_between_frames_is_reported_once_per_run() -> None:
    stream = frame(b"a") + b"garbage" * 100 + frame(b"b") + b"more junk" + frame(b"c")
    items = _feed_all(MllpFramer(), stream, 1)
    errors = [i for i in items if isinstance(i, DecodeError)]
    assert [i.payload for i in items if isinstance(i, Frame)] == [b"a", b"b", b"c"]
    assert len(errors) == 2
    assert errors[0].offset == len(frame(b"a"))
    assert "expected VT" in errors[0].reason


def test_truncated_frame_at_end_of_stream_is_reported() -> None:
    items = _feed_all(MllpFramer(), frame(b"a") + b"\x0bMSH|partial")
    errors = [i for i in items if isinstance(i, DecodeError)]
    assert len(errors) == 1 and "truncated" in errors[0].reason


def test_restart_inside_a_frame_reports_the_unfinished_one() -> None:
    items = _feed_all(MllpFramer(), b"\x0bhalf" + frame(b"whole"))
    assert [i.payload for i in items if isinstance(i, Frame)] == [b"whole"]
    assert len([i for i in items if isinstance(i, DecodeError)]) == 1


def test_oversize_frame_is_rejected_and_skipped_without_growing_the_buffer() -> None:
    framer = MllpFramer(max_frame_bytes=100)
    out = framer.feed(b"\x0b" + b"x" * 50)
    for _ in range(100):
        out += framer.feed(b"x" * 50)
        assert len(framer._buf) <= 150
    out += framer.feed(b"\x1c\r" + frame(b"ok"))
    errors = [i for i in out if isinstance(i, DecodeError)]
    assert len(errors) == 1 and "exceeds" in errors[0].reason
    assert [i.payload for i in out if isinstance(i, Frame)] == [b"ok"]


def test_missing_cr_after_fs_is_tolerated() -> None:
    items = _feed_all(MllpFramer(), b"\x0bone\x1c\x0btwo\x1c\r")
    assert [i.payload for i in items if isinstance(i, Frame)] == [b"one", b"two"]
