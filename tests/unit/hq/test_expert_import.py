"""CSV import parsing: what is accepted (UTF-8 with or without BOM, GBK when chosen, comma/semicolon/tab,
Chinese or English headers) and what is refused, each problem with its row, column and what was expected."""

from __future__ import annotations

from hq.expert_import import RowError, parse

DEPARTMENTS = {"心内科": 1, "cardiology": 1, "心血管内科": 1, "neurology": 2, "神经内科": 2}
HEADER = "ref,name,department,time_zone,languages,tags,daily_cap,credential_kind,credential_expires\n"


def resolve(name: str) -> int | None:
    return DEPARTMENTS.get(name.strip().lower())


def errors(data: bytes, **kw: str) -> list[str]:
    return [str(e) for e in parse(data, resolve=resolve, **kw).errors]


def test_a_good_file_gives_checked_rows() -> None:
    text = HEADER + ("R1,Dr. Li,心内科,Asia/Shanghai,zh;en,arrhythmia;heart failure,6,medical license,2028-06-30\n"
                     "R2,Dr. Wang,Cardiology,Asia/Urumqi,中文,,,,\n\n,,,,,,,,\n")  # blank rows are skipped
    parsed = parse(text.encode(), resolve=resolve)
    assert parsed.errors == [] and parsed.encoding == "utf-8" and parsed.delimiter == ","
    first, second = parsed.rows
    assert first.row == 2 and first.ref == "R1"
    assert first.profile == {"external_ref": "R1", "name": "Dr. Li", "department": 1, "time_zone": "Asia/Shanghai",
                             "languages": ["zh", "en"], "tags": ["arrhythmia", "heart failure"], "daily_cap": 6}
    assert first.credential is not None and first.credential["kind"] == "medical license"
    assert str(first.credential["expires_on"]) == "2028-06-30"
    assert second.profile["languages"] == ["zh"] and second.credential is None


def test_utf8_with_a_byte_order_mark_as_excel_writes_it() -> None:
    data = b"\xef\xbb\xbf" + (HEADER + "R1,李医生,心血管内科,Asia/Shanghai,zh,,,,\n").encode()
    parsed = parse(data, resolve=resolve)
    assert parsed.errors == [] and parsed.rows[0].profile["name"] == "李医生"  # the BOM is not in 'ref'


def test_gbk_is_refused_as_utf8_with_a_hint_and_read_when_chosen() -> None:
    data = (HEADER + "R1,李医生,心内科,Asia/Shanghai,中文,,,,\n").encode("gbk")
    refused = parse(data, resolve=resolve)
    assert refused.rows == [] and len(refused.errors) == 1
    error = refused.errors[0]
    assert error.row == 2 and error.column is None
    assert error.message.startswith("the file is not UTF-8: byte 0xC0 at line 2")
    assert "reads as GBK" in error.expected and "encoding GBK" in error.expected
    accepted = parse(data, resolve=resolve, encoding="gbk")
    assert accepted.errors == [] and accepted.encoding == "gbk"
    assert accepted.rows[0].profile["name"] == "李医生" and accepted.rows[0].profile["department"] == 1


def test_bytes_that_are_neither_utf8_nor_gbk() -> None:
    data = HEADER.encode() + b"R1,Dr. \xff\xfe\xff,cardiology,UTC,en,,,,\n"
    [error] = errors(data)
    assert "not UTF-8: byte 0xFF at line 2, character 8" in error and "choose the encoding GBK" in error


def test_utf16_and_unknown_encodings_and_empty_files_are_refused() -> None:
    assert "UTF-16" in errors((HEADER + "R1,Li,cardiology,UTC,en,,,,\n").encode("utf-16"))[0]
    assert errors(b"a,b\n", encoding="latin-1") == ["file: unknown encoding 'latin-1'; expected utf-8 or gbk"]
    assert errors(b"") == ["file: the file is empty; expected a header row and at least one expert"]
    assert errors(HEADER.encode()) == ["file: the file has a header but no experts; expected at least one row"]


def test_header_problems_name_the_column() -> None:
    found = parse(b"ref,name,department,colour,languages,Name\nR1,Li,cardiology,red,en,Li\n", resolve=resolve).errors
    assert [(e.row, e.column, e.message) for e in found] == [
        (1, "colour", "unknown column"),
        (1, "Name", "the column name appears twice (also as 'name')"),
        (1, "time_zone", "required column missing")]
    assert "required: ref, name, department, time_zone, languages" in found[0].expected


def test_every_bad_cell_of_every_row_is_reported_with_row_column_value_and_expectation() -> None:
    text = HEADER + ("R1,Dr. Li,Astrology,Asia/Beijing,zh,,6,,\n"
                     "R2,,心内科,UTC,Klingon,,lots,,2028-06-30\n"
                     "R3,Dr. Ok,心内科,UTC,en,,,,\n"
                     "R1,Dr. Again,心内科,UTC,en,,,,\n"
                     "R5,Dr. Date,心内科,UTC,en,,,license,30/06/2028\n")
    found = parse(text.encode(), resolve=resolve)
    got = [(e.row, e.column, e.value) for e in found.errors]
    assert got == [(2, "department", "Astrology"), (2, "time_zone", "Asia/Beijing"), (3, "name", ""),
                   (3, "languages", "Klingon"), (3, "daily_cap", "lots"), (3, "credential_kind", None),
                   (5, "ref", "R1"), (6, "credential_expires", "30/06/2028")]
    messages = [str(e) for e in found.errors]
    assert messages[0].startswith("row 2, column department: 'Astrology' is not a known department or synonym; "
                                  "expected a department name or synonym HQ knows")
    assert messages[1] == ("row 2, column time_zone: 'Asia/Beijing' is not a known time zone; expected an IANA time "
                           "zone such as Asia/Shanghai, Asia/Urumqi or Europe/Berlin")
    assert messages[6] == "row 5, column ref: ref 'R1' is already on row 2; expected each expert once in a file"
    assert "day-first or month-first" in messages[7]
    assert [r.ref for r in found.rows] == ["R3"]  # only wholly good rows are kept


def test_malformed_rows_extra_cells_and_bad_quoting() -> None:
    extra = HEADER + "R1,Li, Wei,心内科,UTC,en,,,,\n"
    [error] = errors(extra.encode())
    assert error == ("row 2: 10 cells, the header has 9; expected 9 cells (a cell with a comma must be in double "
                     "quotes)")
    quoted = HEADER + 'R1,"Li, Wei",心内科,UTC,en,"heart failure;\nstroke",,,\nR2,"Dr. ""Ok""",心内科,UTC,en,,,,\n'
    parsed = parse(quoted.encode(), resolve=resolve)
    assert parsed.errors == [] and parsed.rows[0].profile["name"] == "Li, Wei"
    assert parsed.rows[0].profile["tags"] == ["heart failure", "stroke"]
    assert parsed.rows[1].row == 3 and parsed.rows[1].profile["name"] == 'Dr. "Ok"'  # row 3, though line 4
    broken = HEADER + 'R1,"Li" Wei,心内科,UTC,en,,,,\n'
    [error] = errors(broken.encode())
    assert error.startswith("row 2: the CSV cannot be read here:") and "double quotes" in error


def test_fewer_cells_than_the_header_are_empty_cells() -> None:
    parsed = parse((HEADER + "R1,Li,心内科,UTC,en\n").encode(), resolve=resolve)
    assert parsed.errors == [] and "tags" not in parsed.rows[0].profile


def test_semicolons_tabs_and_chinese_headers() -> None:
    semi = "工号;姓名;科室;时区;语言\nR1;李医生;神经内科;Asia/Shanghai;zh, en\n"
    parsed = parse(semi.encode(), resolve=resolve)
    assert parsed.errors == [] and parsed.delimiter == ";"
    assert parsed.rows[0].profile["department"] == 2 and parsed.rows[0].profile["languages"] == ["zh", "en"]
    tabs = "Ref\tName\tDepartment\tTime Zone\tLanguages\nR1\tLi\tneurology\tUTC\ten\n"
    parsed = parse(tabs.encode(), resolve=resolve)
    assert parsed.errors == [] and parsed.delimiter == "\t" and parsed.rows[0].headers["time_zone"] == "Time Zone"


def test_row_errors_as_json() -> None:
    error = RowError(4, "daily_cap", "'x' is not a whole number", "a whole number", "x", line=6)
    assert error.to_json() == {"row": 4, "line": 6, "column": "daily_cap", "value": "x",
                               "error": "'x' is not a whole number", "expected": "a whole number",
                               "message": "row 4 (line 6), column daily_cap: 'x' is not a whole number; expected a "
                                          "whole number"}
