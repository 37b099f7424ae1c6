"""Bulk import of experts from a CSV file: decoding (what is accepted and how a refusal is worded), the header,
and every row's fields checked, each problem reported with its row, column, the value and what was expected.

Pure: bytes in, rows or errors out; departments are resolved by a function the caller passes. Writing the rows
is `hq.experts.import_rows`, which is all-or-nothing: a file with any error changes nothing, and its errors are
all listed at once. Why not row by row: a directory file is one hospital's list, fixed and uploaded again as a
whole; a partial import would leave the directory half old and half new, and the next upload of the corrected
file would have to tell the rows already in from those not (the `ref` column makes uploads repeatable, so the
corrected file simply goes in whole).

Encodings: UTF-8, with or without a byte-order mark (Excel's "CSV UTF-8" writes one). GBK/GB18030 (what Excel
on Chinese Windows writes for plain "CSV") only when the uploader says so (`encoding=gbk`): guessing would turn
a file in another encoding into plausible but wrong Chinese. A file that is not valid in the chosen encoding is
refused with the line of the first bad byte and, when it decodes as GBK, a hint to choose GBK. UTF-16 ("Unicode
text") is refused with how to save the file instead. Delimiter: comma, or semicolon or tab when the header uses
that and no comma.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from hq import expert_fields as fields
from hq.expert_fields import FieldProblem
from hq.taxonomy import normalise

MAX_BYTES = 5 * 1024 * 1024
MAX_ROWS = 20_000
MAX_ERRORS = 500
ENCODINGS = {"utf-8": "UTF-8", "gbk": "GBK (GB18030)"}  # what the uploader may choose
UTF8_BOM = b"\xef\xbb\xbf"


@dataclass(frozen=True, slots=True)
class Column:
    name: str
    required: bool
    meaning: str
    aliases: tuple[str, ...] = ()


COLUMNS: tuple[Column, ...] = (
    Column("ref", True, "the expert's staff or licence number at their hospital; importing the file again "
                        "updates the expert with this ref instead of adding another", ("工号", "编号", "staff id")),
    Column("name", True, "full name", ("姓名", "full name")),
    Column("department", True, "department: any name or synonym HQ knows (心内科, Cardiology, ...)", ("科室",)),
    Column("time_zone", True, "IANA time zone, e.g. Asia/Shanghai", ("时区", "timezone")),
    Column("languages", True, "languages, e.g. zh; en", ("语言", "language")),
    Column("title", False, "title, e.g. Chief Physician", ("职称",)),
    Column("hospital", False, "hospital", ("医院", "单位")),
    Column("scope_of_practice", False, "scope of practice", ("执业范围", "scope")),
    Column("tags", False, "skills and diseases, separated by ;", ("标签", "专长", "skills")),
    Column("daily_cap", False, "consultations a day at most (default 8)", ("每日上限", "cap")),
    Column("active", False, "yes or no (default yes)", ("在职", "状态")),
    Column("username", False, "console account of the expert (role expert), to link", ("账号", "user")),
    Column("credential_kind", False, "a credential, e.g. medical license", ("证书", "资质")),
    Column("credential_identifier", False, "the credential's number", ("证书编号",)),
    Column("credential_issuer", False, "who issued it", ("发证机关",)),
    Column("credential_expires", False, "valid through, YYYY-MM-DD", ("有效期至", "证书有效期")),
)
_BY_KEY = {normalise(k): c for c in COLUMNS for k in (c.name, c.name.replace("_", " "), *c.aliases)}
COLUMNS_EXPECTED = "columns " + ", ".join(c.name for c in COLUMNS) + " (required: " + \
                   ", ".join(c.name for c in COLUMNS if c.required) + ")"


@dataclass(frozen=True, slots=True)
class RowError:
    row: int | None  # the spreadsheet's row number (the header is row 1); None: the whole file
    column: str | None  # the column as the file names it; None: the whole row or file
    message: str
    expected: str
    value: str | None = None
    line: int | None = None  # the file's line, when it differs from the row (cells with line breaks)

    def __str__(self) -> str:
        where = "file" if self.row is None else f"row {self.row}"
        if self.line is not None and self.line != self.row:
            where += f" (line {self.line})"
        if self.column is not None:
            where += f", column {self.column}"
        return f"{where}: {self.message}; expected {self.expected}"

    def to_json(self) -> dict[str, Any]:
        return {"row": self.row, "line": self.line, "column": self.column, "value": self.value,
                "error": self.message, "expected": self.expected, "message": str(self)}


@dataclass(frozen=True, slots=True)
class ImportRow:
    row: int
    ref: str
    profile: dict[str, Any]  # hq.experts profile fields, checked
    credential: dict[str, Any] | None
    headers: Mapping[str, str]  # profile or credential field -> the column as the file names it


@dataclass(slots=True)
class ParsedFile:
    encoding: str = "utf-8"
    delimiter: str = ","
    rows: list[ImportRow] = field(default_factory=list)
    errors: list[RowError] = field(default_factory=list)


class _Refused(Exception):
    def __init__(self, error: RowError) -> None:
        self.error = error


def decode(data: bytes, encoding: str) -> tuple[str, str]:
    """(text, the encoding used). Raises _Refused with a RowError saying what is wrong and what to do."""
    if encoding not in ENCODINGS:
        raise _Refused(RowError(None, None, f"unknown encoding {encoding!r}", "utf-8 or gbk"))
    if not data.strip():
        raise _Refused(RowError(None, None, "the file is empty", "a header row and at least one expert"))
    if len(data) > MAX_BYTES:
        raise _Refused(RowError(None, None, f"the file has {len(data):,} bytes", f"at most {MAX_BYTES:,} bytes "
                                "(split it into several files)"))
    if data.startswith((b"\xff\xfe", b"\xfe\xff")) or data[:200].count(b"\x00") > 10:
        raise _Refused(RowError(None, None, "the file is UTF-16 (Excel's 'Unicode Text'), not CSV text",
                                "a CSV file: in Excel, Save As 'CSV UTF-8 (Comma delimited)'"))
    if data.startswith(UTF8_BOM):
        data, encoding = data[len(UTF8_BOM):], "utf-8"  # the mark says UTF-8, whatever was chosen
    codec = "gb18030" if encoding == "gbk" else "utf-8"
    try:
        return data.decode(codec), encoding
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        column = exc.start - (data.rfind(b"\n", 0, exc.start) + 1) + 1
        hint = f"a file in {ENCODINGS[encoding]}"
        if encoding == "utf-8":
            try:
                data.decode("gb18030")
                hint = ("UTF-8; it reads as GBK (what Excel on Chinese Windows saves as 'CSV'): upload it again "
                        "with the encoding GBK, or save it as 'CSV UTF-8'")
            except UnicodeDecodeError:
                hint = "UTF-8 (in Excel, Save As 'CSV UTF-8'), or choose the encoding GBK for a GBK file"
        raise _Refused(RowError(line, None, f"the file is not {ENCODINGS[encoding]}: byte 0x{data[exc.start]:02X} at "
                                f"line {line}, character {column} cannot be read", hint, line=line)) from None


def _delimiter(text: str) -> str:
    header = text.split("\n", 1)[0]
    if "," in header:
        return ","
    return ";" if ";" in header else "\t" if "\t" in header else ","


def parse(data: bytes, *, resolve: Callable[[str], int | None], encoding: str = "utf-8") -> ParsedFile:
    """Check a whole file; `resolve(name)` gives a department's id for any of its names, or None."""
    parsed = ParsedFile(encoding=encoding)
    try:
        text, parsed.encoding = decode(data, encoding)
    except _Refused as refused:
        parsed.errors.append(refused.error)
        return parsed
    parsed.delimiter = _delimiter(text)
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=parsed.delimiter, strict=True)
    try:
        header = next(reader)
        columns = _header(header, parsed.errors)
        if parsed.errors:
            return parsed
        seen: dict[str, int] = {}
        ref_at = next(i for i, c in enumerate(columns) if c is not None and c.name == "ref")
        for number, cells in enumerate(reader, start=2):
            if not any(c.strip() for c in cells):
                continue  # blank rows at the end of spreadsheets
            if number - 1 > MAX_ROWS:
                parsed.errors.append(RowError(number, None, f"more than {MAX_ROWS:,} experts in one file",
                                              f"at most {MAX_ROWS:,} rows (split the file)"))
                break
            row = _row(number, reader.line_num, cells, header, columns, resolve, parsed.errors)
            ref = cells[ref_at].strip() if ref_at < len(cells) else ""
            if ref and ref in seen:
                parsed.errors.append(RowError(number, header[ref_at].strip(), f"ref {ref!r} is already on row "
                                              f"{seen[ref]}", "each expert once in a file", ref))
            elif row is not None:
                parsed.rows.append(row)
            seen.setdefault(ref, number)
            if len(parsed.errors) >= MAX_ERRORS:
                break
    except StopIteration:
        parsed.errors.append(RowError(None, None, "the file is empty", "a header row and at least one expert"))
    except csv.Error as exc:
        parsed.errors.append(RowError(reader.line_num, None, f"the CSV cannot be read here: {exc}",
                                      'cells with commas, quotes or line breaks enclosed in double quotes, '
                                      'a quote inside a quoted cell doubled ("")', line=reader.line_num))
    if not parsed.rows and not parsed.errors:
        parsed.errors.append(RowError(None, None, "the file has a header but no experts", "at least one row"))
    return parsed


def _header(header: list[str], errors: list[RowError]) -> list[Column | None]:
    columns: list[Column | None] = []
    seen: dict[str, str] = {}
    for cell in header:
        key = normalise(cell)
        column = _BY_KEY.get(key)
        if column is None:
            if key:
                errors.append(RowError(1, cell.strip(), "unknown column", COLUMNS_EXPECTED, cell))
            columns.append(None)  # an empty header cell: its column is ignored
            continue
        if column.name in seen:
            errors.append(RowError(1, cell.strip(), f"the column {column.name} appears twice (also as "
                                   f"{seen[column.name]!r})", "each column once"))
        seen[column.name] = cell.strip()
        columns.append(column)
    for column in COLUMNS:
        if column.required and column.name not in seen:
            errors.append(RowError(1, column.name, "required column missing", f"a column {column.name}: "
                                   f"{column.meaning}"))
    return columns


# Profile or credential field each column fills.
_FIELD = {"ref": "external_ref", "credential_kind": "kind", "credential_identifier": "identifier",
          "credential_issuer": "issuer", "credential_expires": "expires_on"}


def _row(number: int, line: int, cells: list[str], header: list[str], columns: list[Column | None],
         resolve: Callable[[str], int | None], errors: list[RowError]) -> ImportRow | None:
    before = len(errors)
    if len(cells) > len(columns):
        errors.append(RowError(number, None, f"{len(cells)} cells, the header has {len(columns)}",
                               f"{len(columns)} cells (a cell with a comma must be in double quotes)",
                               line=line if line != number else None))
        return None
    values = {c.name: cells[i].strip() if i < len(cells) else "" for i, c in enumerate(columns) if c is not None}
    named = {c.name: header[i].strip() for i, c in enumerate(columns) if c is not None}
    profile: dict[str, Any] = {}
    credential: dict[str, Any] = {}

    def check(column: str, fn: Callable[[str], Any]) -> None:
        value = values.get(column, "")
        spec = next(c for c in COLUMNS if c.name == column)
        if not value:
            if spec.required:
                errors.append(RowError(number, named.get(column, column), "is empty", spec.meaning, value))
            return
        try:
            result = fn(value)
        except FieldProblem as problem:
            errors.append(RowError(number, named.get(column, column), problem.message, problem.expected, value))
            return
        target = _FIELD.get(column, column)
        (credential if column.startswith("credential_") else profile)[target] = result

    def department(value: str) -> int:
        found = resolve(value)
        if found is None:
            raise FieldProblem("department", f"{value!r} is not a known department or synonym",
                               "a department name or synonym HQ knows, e.g. 心内科 or Cardiology; a coordinator can "
                               "add synonyms on the Departments page")
        return found

    check("ref", lambda v: fields.text("ref", v, max_length=64, required=True))
    check("name", lambda v: fields.text("name", v, max_length=200, required=True))
    check("department", department)
    check("time_zone", fields.time_zone)
    check("languages", fields.languages)
    check("title", lambda v: fields.text("title", v, max_length=200))
    check("hospital", lambda v: fields.text("hospital", v, max_length=200))
    check("scope_of_practice", lambda v: fields.text("scope_of_practice", v, max_length=4000))
    check("tags", lambda v: list(fields.tags(v).values()))
    check("daily_cap", fields.daily_cap)
    check("active", lambda v: fields.yes_no(v, "active"))
    check("username", lambda v: v)
    check("credential_kind", lambda v: fields.text("kind", v, max_length=64))
    check("credential_identifier", lambda v: fields.text("identifier", v, max_length=100))
    check("credential_issuer", lambda v: fields.text("issuer", v, max_length=200))
    check("credential_expires", lambda v: fields.iso_date(v, "expires_on"))
    if credential and "kind" not in credential:
        errors.append(RowError(number, named.get("credential_kind", "credential_kind"), "is empty, but the row has "
                               "other credential cells", "the credential's kind, e.g. medical license"))
    if len(errors) > before:
        return None
    headers = {_FIELD.get(name, name): text for name, text in named.items()}
    return ImportRow(number, profile["external_ref"], profile, credential or None, headers)
