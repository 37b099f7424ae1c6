"""Annex-B access units: NAL splitting, keyframes, parameter sets from extradata in both forms."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway.media import h264

SPS = bytes([0x67, 0x42, 0xC0, 0x1E, 0xDA])
PPS = bytes([0x68, 0xCE, 0x3C, 0x80])
IDR = bytes([0x65, 0x88, 0x84, 0x00, 0x33])
SLICE = bytes([0x41, 0x9A, 0x20, 0x13])
AUD = bytes([0x09, 0xF0])


def annexb(*nals: bytes, long: bool = True) -> bytes:
    return b"".join((b"\x00\x00\x00\x01" if long else b"\x00\x00\x01") + n for n in nals)


def test_split_handles_both_start_code_lengths() -> None:
    data = annexb(AUD, SPS) + annexb(PPS, IDR, long=False)
    assert h264.split_nals(data) == [AUD, SPS, PPS, IDR]
    assert h264.nal_types(data) == [9, 7, 8, 5]


def test_keyframes_and_parameter_sets() -> None:
    assert h264.is_keyframe(annexb(AUD, SPS, PPS, IDR)) and h264.has_parameter_sets(annexb(SPS, PPS, IDR))
    assert not h264.is_keyframe(annexb(AUD, SLICE))
    assert not h264.has_parameter_sets(annexb(IDR))


def test_parameter_sets_from_avcc_and_annexb_extradata() -> None:
    avcc = bytes([1, 0x42, 0xC0, 0x1E, 0xFF, 0xE1]) + len(SPS).to_bytes(2, "big") + SPS + bytes([1]) + \
        len(PPS).to_bytes(2, "big") + PPS
    assert h264.annexb_parameter_sets(avcc) == annexb(SPS, PPS)
    assert h264.annexb_parameter_sets(annexb(SPS, PPS, long=False)) == annexb(SPS, PPS)
    assert h264.annexb_parameter_sets(None) == b""
    with pytest.raises(h264.H264Error, match="truncated"):
        h264.annexb_parameter_sets(avcc[:-2])
    with pytest.raises(h264.H264Error, match="neither"):
        h264.annexb_parameter_sets(annexb(SLICE))


def test_keyframes_without_parameter_sets_get_them_after_the_delimiter() -> None:
    params = annexb(SPS, PPS)
    assert h264.with_parameter_sets(annexb(AUD, IDR), params) == annexb(AUD, SPS, PPS, IDR)
    assert h264.with_parameter_sets(annexb(IDR), params) == annexb(SPS, PPS, IDR)
    already = annexb(SPS, PPS, IDR)
    assert h264.with_parameter_sets(already, params) is already
    inter = annexb(SLICE)
    assert h264.with_parameter_sets(inter, params) is inter


@given(st.binary(max_size=200))
def test_any_bytes_split_without_error(data: bytes) -> None:
    for nal in h264.split_nals(data):
        assert nal
