"""MLLP framing (VT payload FS CR) as a sans-I/O framer: bytes in, complete frames out.

It does not parse the payload (see `devices.hl7`) and never touches a socket or port.
"""

from __future__ import annotations

from dataclasses import dataclass

from devices.records import DecodeError

VT = 0x0B
FS = 0x1C
CR = 0x0D
START = b"\x0b"
END = b"\x1c\x0d"
_BLANK = b" \t\r\n\x00"


def frame(payload: bytes) -> bytes:
    """Wrap one payload in MLLP start and end bytes."""
    return START + payload + END


@dataclass(frozen=True, slots=True)
class Frame:
    """One complete payload and the stream offset of its start byte (VT, or first byte when bare)."""

    payload: bytes
    offset: int


class StreamFramer:
    """What the MLLP and bare-HL7 framers share: a bounded buffer with its stream offset, a `feed`
    loop over the subclass's `_step`, and garbage reporting (once per run of it)."""

    GARBAGE_REASON = "bytes outside a frame"

    def __init__(self, max_frame_bytes: int = 1 << 20) -> None:
        self.max_frame_bytes = max_frame_bytes
        self._buf = bytearray()
        self._base = 0  # stream offset of _buf[0]
        self._scanned = 0  # bytes of _buf already searched for the next boundary
        self._garbage_reported = False

    def feed(self, data: bytes) -> list[Frame | DecodeError]:
        self._buf += data
        out: list[Frame | DecodeError] = []
        while self._step(out):
            pass
        return out

    def _step(self, out: list[Frame | DecodeError]) -> bool:
        raise NotImplementedError

    def _consume(self, n: int) -> None:
        del self._buf[:n]
        self._base += n
        self._scanned = 0

    def _garbage(self, n: int, out: list[Frame | DecodeError]) -> None:
        chunk = bytes(self._buf[:n])
        text = chunk.lstrip(_BLANK)
        if not self._garbage_reported and text.rstrip(_BLANK):
            self._garbage_reported = True
            out.append(DecodeError(self.GARBAGE_REASON, offset=self._base + len(chunk) - len(text), frame=text))
        self._consume(n)


class MllpFramer(StreamFramer):
    """Splits a byte stream into MLLP frames.

    Bytes outside VT ... FS CR are garbage: each run of it is reported once. A frame longer
    than `max_frame_bytes` is reported and skipped up to its end; a VT inside a frame means the
    sender restarted, so the unfinished frame is reported and a new one begins.
    """

    GARBAGE_REASON = "bytes outside an MLLP frame; expected VT (0x0B) to start a frame"

    def __init__(self, max_frame_bytes: int = 1 << 20) -> None:
        super().__init__(max_frame_bytes)  # _buf: bytes after the frame's VT (in a frame) or unframed bytes
        self._frame_start = 0  # stream offset of the current frame's VT
        self._in_frame = False
        self._skipping = False  # inside an oversize frame, dropping bytes until its end

    def flush(self) -> list[Frame | DecodeError]:
        """End of stream: an unfinished frame is reported as truncated."""
        out: list[Frame | DecodeError] = []
        if self._in_frame and not self._skipping and self._buf.endswith(b"\x1c"):
            out.append(Frame(bytes(self._buf[:-1]), self._frame_start))
        elif self._in_frame and not self._skipping:
            out.append(
                DecodeError(
                    f"frame truncated: {len(self._buf)} bytes after VT and no FS CR before the end of input; "
                    "expected VT <message> FS CR",
                    offset=self._frame_start,
                    frame=bytes(self._buf),
                )
            )
        elif not self._in_frame and self._buf:
            self._garbage(len(self._buf), out)
        self._consume(len(self._buf))
        self._in_frame = self._skipping = False
        self._garbage_reported = False
        return out

    def _step(self, out: list[Frame | DecodeError]) -> bool:
        buf = self._buf
        if not self._in_frame:
            if not buf:
                return False
            start = buf.find(START)
            if start == -1:
                self._garbage(len(buf), out)
                return False
            if start:
                self._garbage(start, out)
            self._garbage_reported = False
            self._frame_start = self._base
            self._consume(1)
            self._in_frame = True
            return True
        end = buf.find(FS, self._scanned)
        restart = buf.find(START, self._scanned, end if end != -1 else len(buf))
        if restart != -1:
            if not self._skipping:
                out.append(
                    DecodeError(
                        "frame truncated: a new VT arrived before FS CR; expected VT <message> FS CR",
                        offset=self._frame_start,
                        frame=bytes(buf[:restart]),
                    )
                )
            self._consume(restart)
            self._in_frame = self._skipping = False
            return True
        if end == -1:
            if self._skipping:
                self._consume(len(buf))
            elif len(buf) > self.max_frame_bytes:
                out.append(
                    DecodeError(
                        f"frame exceeds the {self.max_frame_bytes}-byte limit without FS CR; skipped up to its end",
                        offset=self._frame_start,
                        frame=bytes(buf[:120]),
                    )
                )
                self._skipping = True
                self._consume(len(buf))
            else:
                self._scanned = len(buf)
            return False
        if end + 1 >= len(buf):
            self._scanned = end  # wait for the byte after FS
            return False
        payload = bytes(buf[:end])
        # Tolerate a missing CR after FS rather than dropping a good message.
        self._consume(end + 2 if buf[end + 1] == CR else end + 1)
        self._in_frame = False
        if self._skipping:
            self._skipping = False
        elif len(payload) > self.max_frame_bytes:
            out.append(
                DecodeError(
                    f"frame of {len(payload)} bytes exceeds the {self.max_frame_bytes}-byte limit; skipped",
                    offset=self._frame_start,
                    frame=payload,
                )
            )
        else:
            out.append(Frame(payload, self._frame_start))
        return True
