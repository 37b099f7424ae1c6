"""ICD-10 diagnosis codes: their format (WHO: a letter, two digits, optionally a dot and a subdivision) and the
bundled list of common codes with their titles (`hq/data/icd10_common.tsv`).

Lookups only; which codes an advice may carry is decided by `hq.advice`.
"""

from __future__ import annotations

import functools
import re
from pathlib import Path

CODES_FILE = Path(__file__).parent / "data" / "icd10_common.tsv"
# A category (I21) or a subcategory (I21.9); national extensions add up to two more characters (I21.901).
CODE_FORMAT = re.compile(r"[A-Z][0-9]{2}(\.[0-9][0-9A-Z]{0,3})?")


class CodeListError(ValueError):
    """The bundled code list is malformed (a packaging fault): the message names the line."""


def normalise(code: str) -> str:
    return code.strip().upper()


def well_formed(code: str) -> bool:
    return CODE_FORMAT.fullmatch(code) is not None


def parse_code_list(text: str, source: str = "icd10_common.tsv") -> dict[str, str]:
    codes: dict[str, str] = {}
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip() or line.startswith("#"):
            continue
        code, sep, title = line.partition("\t")
        if not sep or not title.strip() or not well_formed(code):
            raise CodeListError(f"{source}:{number}: expected 'CODE<TAB>title' with a well-formed code, got {line!r}")
        if code in codes:
            raise CodeListError(f"{source}:{number}: code {code} is listed twice")
        codes[code] = title.strip()
    return codes


@functools.cache
def common_codes() -> dict[str, str]:
    return parse_code_list(CODES_FILE.read_text(encoding="utf-8"))


def title(code: str) -> str | None:
    return common_codes().get(normalise(code))


def in_category(code: str, limit: int = 8) -> list[str]:
    """Listed codes of the same category (the first three characters), for a helpful error."""
    category = normalise(code)[:3]
    return [c for c in common_codes() if c.startswith(category)][:limit]
