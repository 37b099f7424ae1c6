"""Splits a bare (unframed) HL7 v2 byte stream into messages: each starts at an MSH segment.

Used for serial links that send messages without MLLP; it does not parse the messages.
"""

from __future__ import annotations

from devices.mllp import Frame, StreamFramer
from devices.records import DecodeError

_LINE_ENDS = b"\r\n"
_BLANK_LINES = (b"\r\r", b"\n\n", b"\n\r")


class BareHl7Framer(StreamFramer):
    """Finds message boundaries in a stream of CR, LF or CRLF terminated segments.

    A message starts with "MSH" at the start of a segment and ends at the next such MSH, at a
    blank line, or at `flush()` (end of input, or idle as judged by the caller). Text before the
    first MSH is garbage, reported once per run; a message longer than `max_frame_bytes` is
    reported and skipped.
    """

    GARBAGE_REASON = "bytes outside an HL7 message; expected a message to start with an MSH segment"

    def __init__(self, max_frame_bytes: int = 1 << 20) -> None:
        super().__init__(max_frame_bytes)
        self._in_message = False
        self._skipping = False
        self._line_start = True  # whether _buf[0] starts a line

    def flush(self) -> list[Frame | DecodeError]:
        out: list[Frame | DecodeError] = []
        if self._in_message:
            if not self._skipping:
                out.append(Frame(bytes(self._buf), self._base))
        elif self._buf:
            self._garbage(len(self._buf), out)
        self._consume(len(self._buf))
        self._in_message = self._skipping = False
        self._line_start = True
        self._garbage_reported = False
        return out

    def _consume(self, n: int) -> None:
        if n:
            self._line_start = self._buf[n - 1] in _LINE_ENDS
        super()._consume(n)

    def _find_msh(self, start: int) -> int:
        """Offset of the next "MSH" that starts a segment, or -1."""
        buf = self._buf
        i = start
        while True:
            i = buf.find(b"MSH", i)
            if i == -1:
                return -1
            if (i == 0 and self._line_start) or (i > 0 and buf[i - 1] in _LINE_ENDS):
                return i
            i += 1

    def _step(self, out: list[Frame | DecodeError]) -> bool:
        buf = self._buf
        if not buf:
            return False
        if not self._in_message:
            start = self._find_msh(self._scanned)
            if start == -1:
                keep = 2  # a trailing "MS" may be the start of the next header
                if len(buf) > keep:
                    self._garbage(len(buf) - keep, out)
                    self._scanned = 0
                return False
            if start:
                self._garbage(start, out)
            self._garbage_reported = False
            self._in_message = True
            self._scanned = 3
            return True
        scan = 0 if self._skipping else max(self._scanned, 3)
        ends = [buf.find(p, max(scan - 1, 0)) for p in _BLANK_LINES]
        blank = min((e for e in ends if e != -1), default=-1)
        nxt = self._find_msh(scan)
        if nxt != -1 and (blank == -1 or nxt <= blank):
            self._emit(nxt, nxt, out)
            return True
        if blank != -1:
            self._emit(blank, blank + 2, out)
            return True
        if len(buf) > self.max_frame_bytes and not self._skipping:
            out.append(
                DecodeError(
                    f"message exceeds the {self.max_frame_bytes}-byte limit without an end; skipped up to its end",
                    offset=self._base,
                    frame=bytes(buf[:120]),
                )
            )
            self._skipping = True
        if self._skipping and len(buf) > 3:
            self._consume(len(buf) - 3)
            self._scanned = 0
            return False
        self._scanned = max(len(buf) - 3, 3)
        return False

    def _emit(self, end: int, consume: int, out: list[Frame | DecodeError]) -> None:
        if end > self.max_frame_bytes and not self._skipping:
            out.append(
                DecodeError(
                    f"message of {end} bytes exceeds the {self.max_frame_bytes}-byte limit; skipped",
                    offset=self._base,
                    frame=bytes(self._buf[:120]),
                )
            )
        elif not self._skipping:
            out.append(Frame(bytes(self._buf[:end]), self._base))
        self._consume(consume)
        self._in_message = self._skipping = False
