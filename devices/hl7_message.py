"""HL7 v2 message syntax: delimiters from MSH, segments, fields, components and escape sequences.

Knows nothing of what messages mean (that is `devices.hl7`), nor of how they are framed on a wire.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone, tzinfo


class Hl7SyntaxError(ValueError):
    """The text is not an HL7 v2 message (bad MSH or delimiters)."""


@dataclass(frozen=True, slots=True)
class Delimiters:
    field: str = "|"
    component: str = "^"
    repetition: str = "~"
    escape: str = "\\"
    subcomponent: str = "&"

    @property
    def encoding_characters(self) -> str:
        return self.component + self.repetition + self.escape + self.subcomponent


DEFAULT_DELIMITERS = Delimiters()


def parse_delimiters(msh: str) -> Delimiters:
    """The delimiters a message declares in MSH-1 and MSH-2 (`msh` is the MSH segment text)."""
    if not msh.startswith("MSH") or len(msh) < 5:
        raise Hl7SyntaxError(f"segment {msh[:8]!r} is not an MSH header; expected 'MSH|^~\\&|...'")
    sep = msh[3]
    end = msh.find(sep, 4)
    encoding = msh[4:] if end == -1 else msh[4:end]
    if sep.isalnum() or sep in "\r\n " or not encoding:
        raise Hl7SyntaxError(f"MSH-1 field separator {sep!r} is unusable; expected a punctuation character")
    chars = (encoding + "\x00\x00\x00")[:4]
    used = [c for c in (sep, *chars) if c != "\x00"]
    if len(set(used)) != len(used) or any(c.isalnum() or c in "\r\n " for c in used):
        raise Hl7SyntaxError(
            f"MSH-2 encoding characters {encoding!r} are invalid; expected distinct punctuation such as '^~\\&'"
        )
    return Delimiters(sep, chars[0], chars[1], chars[2], chars[3])


_HEX = re.compile(r"[0-9A-Fa-f]*")


def unescape(text: str, d: Delimiters) -> str:
    """Resolve HL7 escape sequences (\\F\\ \\S\\ \\T\\ \\R\\ \\E\\ \\Xhh\\ ...); unknown ones are dropped."""
    esc = d.escape
    if esc == "\x00" or esc not in text:
        return text
    out: list[str] = []
    i = 0
    n = len(text)
    while i < n:
        j = text.find(esc, i)
        if j == -1:
            out.append(text[i:])
            break
        out.append(text[i:j])
        k = text.find(esc, j + 1)
        if k == -1:
            # An unterminated escape is kept literally rather than losing the text after it.
            out.append(text[j:])
            break
        seq = text[j + 1 : k]
        out.append(_escape_value(seq, d, text[j : k + 1]))
        i = k + 1
    return "".join(out)


def _escape_value(seq: str, d: Delimiters, literal: str) -> str:
    simple = {"F": d.field, "S": d.component, "T": d.subcomponent, "R": d.repetition, "E": d.escape}
    if seq in simple:
        return simple[seq]
    if seq.startswith("X") and len(seq) % 2 == 1 and _HEX.fullmatch(seq, 1):
        raw = bytes.fromhex(seq[1:])
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError:
            return raw.decode("latin-1")
    if seq == ".br":
        return "\n"
    if seq in ("H", "N") or seq.startswith((".", "C", "M", "Z")):
        # Formatting, highlighting and character-set switches carry no value text.
        return ""
    return literal


def escape(text: str, d: Delimiters = DEFAULT_DELIMITERS) -> str:
    """Escape delimiters and control characters (CR, LF would end the segment; VT, FS the MLLP frame)."""
    specials = {d.field, d.component, d.repetition, d.escape, d.subcomponent}
    if not any(c in specials or c < " " or c == "\x7f" for c in text):
        return text
    e = d.escape
    table = {
        d.escape: f"{e}E{e}",
        d.field: f"{e}F{e}",
        d.component: f"{e}S{e}",
        d.subcomponent: f"{e}T{e}",
        d.repetition: f"{e}R{e}",
    }
    out = []
    for c in text:
        if c in table:
            out.append(table[c])
        elif c < " " or c == "\x7f":
            out.append(f"{e}X{ord(c):02X}{e}")
        else:
            out.append(c)
    return "".join(out)


class Segment:
    """One segment: `seg[n]` is field n as in the standard (MSH-1 is the field separator itself)."""

    __slots__ = ("_fields", "delimiters", "name", "offset")

    def __init__(self, text: str, d: Delimiters, offset: int = 0) -> None:
        self.delimiters = d
        self.offset = offset
        fields = text.split(d.field)
        self.name = fields[0]
        if self.name == "MSH":
            fields.insert(1, d.field)
        self._fields = fields

    def __getitem__(self, n: int) -> str:
        """Raw (still escaped) text of field n, or "" when absent."""
        fields = self._fields
        return fields[n] if n < len(fields) else ""

    def components(self, n: int, repetition: int = 0) -> list[str]:
        """Field n's components (unescaped) in the given repetition; [] when empty."""
        raw = self[n]
        if not raw:
            return []
        d = self.delimiters
        if d.repetition in raw and not (n <= 2 and self.name == "MSH"):
            reps = raw.split(d.repetition)
            if repetition >= len(reps):
                return []
            raw = reps[repetition]
        parts = raw.split(d.component)
        return [unescape(c, d) for c in parts] if d.escape in raw else parts

    def component(self, n: int, c: int = 1, repetition: int = 0) -> str:
        """Component c (1-based, HL7 style) of field n, unescaped; "" when absent."""
        comps = self.components(n, repetition)
        return comps[c - 1] if c <= len(comps) else ""

    def value(self, n: int) -> str:
        """Field n as one unescaped string (components and repetitions kept as sent)."""
        return unescape(self[n], self.delimiters)

    def repetitions(self, n: int) -> list[str]:
        raw = self[n]
        return [] if not raw else raw.split(self.delimiters.repetition)


_SEGMENT = re.compile(r"[^\r\n]+")


def split_segments(text: str) -> list[tuple[int, str]]:
    """(character offset, segment text) for each non-empty segment; CR, LF and CRLF all end one."""
    return [(m.start(), m.group()) for m in _SEGMENT.finditer(text)]


_ZONES: dict[str, tzinfo] = {}


def _offset_zone(offset: str) -> tzinfo:
    """The fixed-offset zone of '+HHMM' / '-HHMM' (validated digits), shared between calls."""
    zone = _ZONES.get(offset)
    if zone is None:
        minutes = int(offset[1:3]) * 60 + int(offset[3:5])
        if int(offset[3:5]) >= 60 or minutes > 14 * 60:
            raise ValueError(f"offset {offset!r} is out of range")
        zone = timezone(timedelta(minutes=-minutes if offset[0] == "-" else minutes))
        _ZONES[offset] = zone  # at most 2 x 14 x 60 valid offsets: bounded
    return zone


def parse_dtm(text: str, tz: tzinfo) -> datetime:
    """An HL7 DTM (YYYY[MM[DD[HH[MM[SS[.S[S[S[S]]]]]]]]][+/-ZZZZ]) as an aware datetime.

    A value without an offset is read in `tz` (the device's zone). Raises ValueError when
    the text is not a DTM.
    """
    sign = max(text.find("+", 4), text.find("-", 4))
    if sign != -1:
        digits, offset = text[:sign], text[sign:]
        if len(offset) != 5 or not offset[1:].isdigit():
            raise ValueError(f"offset {offset!r} is not +/-HHMM")
        zone: tzinfo = _offset_zone(offset)
    else:
        digits, zone = text, tz
    frac = 0
    dot = digits.find(".")
    if dot != -1:
        fraction = digits[dot + 1 :]
        digits = digits[:dot]
        if len(digits) != 14 or not 1 <= len(fraction) <= 4 or not fraction.isdigit():
            raise ValueError("fractional seconds need a full YYYYMMDDHHMMSS and 1-4 digits")
        frac = int(fraction.ljust(6, "0"))
    if len(digits) not in (4, 6, 8, 10, 12, 14) or not digits.isdigit() or not digits.isascii():
        raise ValueError("expected YYYY[MM[DD[HH[MM[SS]]]]] digits")
    year = int(digits[0:4])
    month = int(digits[4:6] or 1)
    day = int(digits[6:8] or 1)
    hour = int(digits[8:10] or 0)
    minute = int(digits[10:12] or 0)
    second = int(digits[12:14] or 0)
    return datetime(year, month, day, hour, minute, second, frac, tzinfo=zone)


def format_dtm(t: datetime) -> str:
    """UTC DTM with millisecond precision and an explicit offset: 20261121143055.123+0000."""
    t = t.astimezone(UTC)
    return t.strftime("%Y%m%d%H%M%S") + f".{t.microsecond // 1000:03d}+0000"
