"""H.264 Annex-B access units as the relay sees them: NAL units, keyframes, parameter sets. Pure, no I/O.

Not a decoder: the relay forwards what cameras send; this only finds where a viewer may start and makes sure
the SPS/PPS a decoder needs travel with every keyframe (some cameras send them only in their SDP).
"""

from __future__ import annotations

from collections.abc import Iterator

START_CODE = b"\x00\x00\x00\x01"
NAL_IDR = 5
NAL_SPS = 7
NAL_PPS = 8
NAL_AUD = 9


class H264Error(ValueError):
    """Codec configuration that is not H.264 parameter sets in Annex-B or avcC form."""


def split_nals(data: bytes) -> list[bytes]:
    """The NAL units of an Annex-B byte stream (3- or 4-byte start codes), without their start codes."""
    return list(_iter_nals(data))


def _iter_nals(data: bytes) -> Iterator[bytes]:
    i = data.find(b"\x00\x00\x01")
    while i != -1:
        start = i + 3
        j = data.find(b"\x00\x00\x01", start)
        # A zero before the next start code is the first byte of a 4-byte start code, not of this unit.
        end = len(data) if j == -1 else j - 1 if data[j - 1] == 0 else j
        nal = data[start:end]
        if nal:
            yield nal
        i = j


def nal_type(nal: bytes) -> int:
    return nal[0] & 0x1F


def nal_types(access_unit: bytes) -> list[int]:
    return [nal_type(n) for n in _iter_nals(access_unit)]


def is_keyframe(access_unit: bytes) -> bool:
    """An access unit with an IDR slice: a decoder (given the parameter sets) can start here."""
    return NAL_IDR in nal_types(access_unit)


def has_parameter_sets(access_unit: bytes) -> bool:
    types = nal_types(access_unit)
    return NAL_SPS in types and NAL_PPS in types


def annexb_parameter_sets(extradata: bytes | None) -> bytes:
    """The SPS and PPS of a stream's codec configuration as Annex-B NAL units (empty if there are none).

    Demuxers give them either as Annex-B (MPEG-TS, RTSP's sprop-parameter-sets) or as an avcC record (MP4).
    """
    if not extradata:
        return b""
    if extradata[0] == 1:  # avcC: version 1
        return _avcc_parameter_sets(extradata)
    nals = [n for n in _iter_nals(extradata) if nal_type(n) in (NAL_SPS, NAL_PPS)]
    if not nals:
        raise H264Error("codec configuration holds neither an avcC record nor Annex-B SPS/PPS units")
    return b"".join(START_CODE + n for n in nals)


def _avcc_parameter_sets(record: bytes) -> bytes:
    try:
        out = []
        pos = 5
        for _kind in ("sps", "pps"):
            count = record[pos] & (0x1F if _kind == "sps" else 0xFF)
            pos += 1
            for _ in range(count):
                length = int.from_bytes(record[pos:pos + 2], "big")
                nal = record[pos + 2:pos + 2 + length]
                if len(nal) != length:
                    raise IndexError
                out.append(START_CODE + nal)
                pos += 2 + length
        return b"".join(out)
    except IndexError:
        raise H264Error(f"avcC record of {len(record)} bytes is truncated") from None


def with_parameter_sets(access_unit: bytes, parameter_sets: bytes) -> bytes:
    """A keyframe that lacks SPS/PPS gets them in front (after an access unit delimiter, if any)."""
    if not parameter_sets or not is_keyframe(access_unit) or has_parameter_sets(access_unit):
        return access_unit
    nals = split_nals(access_unit)
    head = [n for n in nals[:1] if nal_type(n) == NAL_AUD]
    return b"".join(START_CODE + n for n in head) + parameter_sets + b"".join(
        START_CODE + n for n in nals[len(head):])
