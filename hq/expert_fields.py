"""The fields of an expert's profile and credentials, checked and normalised: names, time zones, languages
(BCP 47, or their common names in Chinese and English), tags, daily cap, dates.

Pure: the same rules serve the console's forms, the JSON API and the CSV import (`hq.expert_import`), and every
error names the field, what was wrong and what was expected. Writing to the database is `hq.experts`.
"""

from __future__ import annotations

import re
import unicodedata
import zoneinfo
from datetime import date

from hq.taxonomy import normalise

MAX_TAGS = 50
MAX_LANGUAGES = 12
MAX_DAILY_CAP = 100
LIST_SEPARATORS = re.compile(r"[;|,、，；\n]+")  # what people put between languages or tags in one cell
_BCP47 = re.compile(r"^[A-Za-z]{2,3}(-[A-Za-z0-9]{2,8})*$")

# Language names people write instead of BCP 47 tags, normalised -> tag.
LANGUAGE_NAMES = {normalise(k): v for k, v in {
    "chinese": "zh", "mandarin": "zh", "中文": "zh", "汉语": "zh", "普通话": "zh", "华语": "zh", "国语": "zh",
    "cantonese": "yue", "粤语": "yue", "广东话": "yue", "english": "en", "英语": "en", "英文": "en",
    "japanese": "ja", "日语": "ja", "korean": "ko", "韩语": "ko", "朝鲜语": "ko", "french": "fr", "法语": "fr",
    "german": "de", "德语": "de", "spanish": "es", "西班牙语": "es", "russian": "ru", "俄语": "ru",
    "arabic": "ar", "阿拉伯语": "ar", "portuguese": "pt", "葡萄牙语": "pt", "tibetan": "bo", "藏语": "bo",
    "uyghur": "ug", "维吾尔语": "ug", "mongolian": "mn", "蒙古语": "mn", "vietnamese": "vi", "越南语": "vi",
    "thai": "th", "泰语": "th"}.items()}

LANGUAGES_EXPECTED = "BCP 47 tags such as zh, en, zh-CN or names such as Chinese, 中文, English, separated by ';'"
TIME_ZONE_EXPECTED = "an IANA time zone such as Asia/Shanghai, Asia/Urumqi or Europe/Berlin"
DATE_EXPECTED = "a date as YYYY-MM-DD, e.g. 2027-06-30"


class FieldProblem(ValueError):
    """One field is wrong: which, why, and what it should look like."""

    def __init__(self, field: str, message: str, expected: str) -> None:
        self.field = field
        self.message = message
        self.expected = expected
        super().__init__(f"{field}: {message}; expected {expected}")

    def to_json(self) -> dict[str, str]:
        return {"error": self.message, "field": self.field, "expected": self.expected}


def text(field: str, value: str, *, max_length: int, required: bool = False) -> str:
    """Trimmed single-line text without control characters."""
    cleaned = unicodedata.normalize("NFC", value).strip()
    if required and not cleaned:
        raise FieldProblem(field, "is empty", f"text of 1 to {max_length} characters")
    if len(cleaned) > max_length:
        raise FieldProblem(field, f"has {len(cleaned)} characters", f"at most {max_length}")
    if any(unicodedata.category(ch) == "Cc" and ch not in "\t" for ch in cleaned) and field != "scope_of_practice":
        raise FieldProblem(field, "contains control characters or a line break", "one line of text")
    return cleaned


def time_zone(value: str, field: str = "time_zone") -> str:
    key = value.strip()
    if not key:
        raise FieldProblem(field, "is empty", TIME_ZONE_EXPECTED)
    try:
        zoneinfo.ZoneInfo(key)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        raise FieldProblem(field, f"{key!r} is not a known time zone", TIME_ZONE_EXPECTED) from None
    return key


def languages(value: str | list[str], field: str = "languages") -> list[str]:
    """BCP 47 tags, de-duplicated, in the order given; at least one."""
    items = LIST_SEPARATORS.split(value) if isinstance(value, str) else value
    found: list[str] = []
    for item in items:
        if not isinstance(item, str):
            raise FieldProblem(field, f"{item!r} is not text", LANGUAGES_EXPECTED)
        raw = unicodedata.normalize("NFKC", item).strip()
        if not raw:
            continue
        tag = LANGUAGE_NAMES.get(normalise(raw)) or _bcp47(raw.replace("_", "-"))
        if tag is None:
            raise FieldProblem(field, f"{raw!r} is not a language tag or a known language name", LANGUAGES_EXPECTED)
        if tag not in found:
            found.append(tag)
    if not found:
        raise FieldProblem(field, "no language given", LANGUAGES_EXPECTED)
    if len(found) > MAX_LANGUAGES:
        raise FieldProblem(field, f"{len(found)} languages", f"at most {MAX_LANGUAGES}")
    return found


def _bcp47(raw: str) -> str | None:
    if not _BCP47.match(raw):
        return None
    first, *rest = raw.split("-")
    # Conventional case: language lower, script title (Hans), region upper (CN), the rest lower.
    shaped = [first.lower()] + [p.title() if len(p) == 4 and p.isalpha() else p.upper() if len(p) == 2 or
                                (len(p) == 3 and p.isdigit()) else p.lower() for p in rest]
    return "-".join(shaped)


def tags(value: str | list[str], field: str = "tags") -> dict[str, str]:
    """Skill or disease tags: normalised key -> the tag as written (first spelling wins)."""
    items = LIST_SEPARATORS.split(value) if isinstance(value, str) else value
    found: dict[str, str] = {}
    for item in items:
        if not isinstance(item, str):
            raise FieldProblem(field, f"{item!r} is not text", "tags as text, separated by ';'")
        shown = unicodedata.normalize("NFC", item).strip()
        key = normalise(shown)
        if not key:
            continue
        if len(key) > 100 or len(shown) > 100:
            raise FieldProblem(field, f"tag {shown[:40]!r}... is too long", "tags of at most 100 characters")
        found.setdefault(key, shown)
    if len(found) > MAX_TAGS:
        raise FieldProblem(field, f"{len(found)} tags", f"at most {MAX_TAGS}")
    return found


def daily_cap(value: str | int, field: str = "daily_cap") -> int:
    expected = f"a whole number from 0 (takes no consultations) to {MAX_DAILY_CAP}"
    if isinstance(value, bool):
        raise FieldProblem(field, f"{value!r} is not a number", expected)
    if isinstance(value, str):
        raw = unicodedata.normalize("NFKC", value).strip()
        if not raw.isascii() or not raw.isdigit():
            raise FieldProblem(field, f"{value!r} is not a whole number", expected)
        value = int(raw)
    if not 0 <= value <= MAX_DAILY_CAP:
        raise FieldProblem(field, f"{value} is out of range", expected)
    return value


_DATE_FORMS = (re.compile(r"^(\d{4})-(\d{1,2})-(\d{1,2})$"), re.compile(r"^(\d{4})/(\d{1,2})/(\d{1,2})$"),
               re.compile(r"^(\d{4})\.(\d{1,2})\.(\d{1,2})$"), re.compile(r"^(\d{4})年(\d{1,2})月(\d{1,2})日$"))


def iso_date(value: str, field: str) -> date:
    """YYYY-MM-DD (also YYYY/MM/DD, YYYY.MM.DD and 2027年6月30日, as spreadsheets write them). Day-first and
    month-first forms (30/06/2027, 06/30/2027) are refused: which one a spreadsheet meant cannot be known."""
    raw = unicodedata.normalize("NFKC", value).strip()
    for form in _DATE_FORMS:
        if m := form.match(raw):
            try:
                return date(int(m[1]), int(m[2]), int(m[3]))
            except ValueError as exc:
                raise FieldProblem(field, f"{raw!r} is not a real date ({exc})", DATE_EXPECTED) from None
    if re.match(r"^\d{1,2}[/.-]\d{1,2}[/.-]\d{2,4}$", raw):
        raise FieldProblem(field, f"{raw!r} could be day-first or month-first", DATE_EXPECTED)
    raise FieldProblem(field, f"{raw!r} is not a date", DATE_EXPECTED)


def yes_no(value: str, field: str) -> bool:
    key = normalise(value)
    if key in ("yes", "y", "true", "1", "active", "是", "有效"):
        return True
    if key in ("no", "n", "false", "0", "inactive", "否", "无效"):
        return False
    raise FieldProblem(field, f"{value!r} is neither yes nor no", "yes or no (also true/false, 1/0, 是/否)")
