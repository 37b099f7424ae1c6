"""The rules of patient identity, pure: normalising names and identifiers (any script), the search keys of a
record and the terms of a query, validating demographics, and deciding whether a registration is a known
patient, a new one, or a possible duplicate for a person to resolve.

No I/O: `hq.records` looks the candidates up and carries the decision out; `hq.patient_search` runs the
queries. A decision never merges two records: conflicting facts become a duplicate candidate.
"""

from __future__ import annotations

import datetime as dt
import enum
import re
import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass, field

KEY_MAX = 100  # patient_search_keys.key
NATIONAL_ID_MAX = 40
MRN_MAX = 80
NAME_MAX = 200
OLDEST_BIRTH_YEAR = 1880


class PatientDataError(ValueError):
    """A field of a patient's data is not acceptable; `field` names it, the message says what was expected."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field


class Gender(enum.StrEnum):
    """FHIR administrative gender."""

    FEMALE = "female"
    MALE = "male"
    OTHER = "other"
    UNKNOWN = "unknown"


_GENDER_WORDS = {
    "female": Gender.FEMALE, "f": Gender.FEMALE, "woman": Gender.FEMALE, "女": Gender.FEMALE,
    "male": Gender.MALE, "m": Gender.MALE, "man": Gender.MALE, "男": Gender.MALE,
    "other": Gender.OTHER, "o": Gender.OTHER, "其他": Gender.OTHER,
    "unknown": Gender.UNKNOWN, "u": Gender.UNKNOWN, "未知": Gender.UNKNOWN,
}


# ---- normalisation ------------------------------------------------------------------------------
def normalise(text: str) -> str:
    """One form for comparing and indexing: NFKC (full-width letters and digits become ASCII), case folded,
    accents dropped (José -> jose), and only letters and digits kept (spaces, hyphens, apostrophes go).
    Chinese characters are letters and stay as they are."""
    folded = unicodedata.normalize("NFKC", text).casefold()
    decomposed = unicodedata.normalize("NFKD", folded)
    kept = "".join(c for c in decomposed if c.isalnum() and not unicodedata.combining(c))
    return unicodedata.normalize("NFC", kept)


_SEPARATORS = re.compile(r"[\s,;/·・()（）、，]+")


def tokens(text: str) -> list[str]:
    """The normalised words of a name or query, in order (separated by spaces and punctuation)."""
    return [t for t in (normalise(part) for part in _SEPARATORS.split(text)) if t]


def is_han(text: str) -> bool:
    """Written in Chinese characters (CJK ideographs) throughout, ignoring anything but letters."""
    letters = [c for c in text if c.isalpha()]
    return bool(letters) and all(_is_ideograph(c) for c in letters)


def _is_ideograph(c: str) -> bool:
    cp = ord(c)
    return 0x4E00 <= cp <= 0x9FFF or 0x3400 <= cp <= 0x4DBF or 0x20000 <= cp <= 0x2EBEF or 0xF900 <= cp <= 0xFAFF


def normalise_national_id(value: str) -> str:
    """Upper case without spaces or hyphens (110105 19900307 123x -> 11010519900307123X)."""
    cleaned = unicodedata.normalize("NFKC", value).upper()
    cleaned = re.sub(r"[\s\-]", "", cleaned)
    if not cleaned:
        raise PatientDataError("national_id", "is empty; leave it out when unknown")
    if len(cleaned) > NATIONAL_ID_MAX or not cleaned.isalnum() or not cleaned.isascii():
        raise PatientDataError("national_id", f"{value!r} must be 1-{NATIONAL_ID_MAX} letters and digits")
    return cleaned


def clean_mrn(value: str) -> str:
    """A clinic's record number as given (it is also the device's patient id: kept exact), trimmed."""
    cleaned = value.strip()
    if not cleaned:
        raise PatientDataError("mrn", "is empty; expected the clinic's record number of the patient")
    if len(cleaned) > MRN_MAX or any(unicodedata.category(c).startswith("C") for c in cleaned):
        raise PatientDataError("mrn", f"{value!r} must be 1-{MRN_MAX} printable characters")
    return cleaned


def parse_gender(value: str | None) -> Gender | None:
    if value is None or not value.strip():
        return None
    found = _GENDER_WORDS.get(value.strip().casefold())
    if found is None:
        raise PatientDataError("sex", f"{value!r} is not one of female, male, other, unknown (or F, M, 女, 男)")
    return found


def parse_birth_date(value: str | dt.date | None, *, today: dt.date) -> dt.date | None:
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    if isinstance(value, dt.date):
        born = value
    else:
        try:
            born = dt.date.fromisoformat(value.strip())
        except ValueError:
            raise PatientDataError("birth_date", f"{value!r} is not a date of the form YYYY-MM-DD") from None
    if born > today:
        raise PatientDataError("birth_date", f"{born.isoformat()} is in the future")
    if born.year < OLDEST_BIRTH_YEAR:
        raise PatientDataError("birth_date", f"{born.isoformat()} is before {OLDEST_BIRTH_YEAR}")
    return born


def display_name(name: str | None, family_name: str | None, given_name: str | None) -> str:
    """The name as shown: the given display name, else family and given in the order their script uses."""
    if name is not None and name.strip():
        return " ".join(name.split())[:NAME_MAX]
    family, given = (family_name or "").strip(), (given_name or "").strip()
    if not family and not given:
        raise PatientDataError("name", "is empty; expected the patient's name (or family_name and given_name)")
    if is_han(family + given):
        return (family + given)[:NAME_MAX]  # 张 + 伟 = 张伟
    return " ".join(p for p in (given, family) if p)[:NAME_MAX]


# ---- search keys and query terms ----------------------------------------------------------------
# Two-character Chinese surnames: the given name of 欧阳娜娜 is 娜娜, not 阳娜娜.
COMPOUND_SURNAMES = frozenset({
    "欧阳", "司马", "上官", "诸葛", "东方", "皇甫", "令狐", "慕容", "尉迟", "长孙", "宇文", "司徒", "夏侯", "轩辕",
    "公孙", "端木", "独孤", "南宫", "百里", "呼延", "西门", "澹台", "万俟", "闻人", "赫连", "申屠", "钟离", "太史",
})


def han_given_name(whole: str) -> str | None:
    """The given name of a Chinese name written as one word (张伟 -> 伟, 欧阳娜娜 -> 娜娜), if it has one."""
    if not is_han(whole) or not 2 <= len(whole) <= 5:
        return None
    surname = 2 if whole[:2] in COMPOUND_SURNAMES and len(whole) > 2 else 1
    return whole[surname:]


class KeyKind(enum.StrEnum):
    NAME = "name"
    NATIONAL_ID = "nid"
    MRN = "mrn"


@dataclass(frozen=True, slots=True)
class KeySource:
    """What a patient can be found by: names in any script, the national id, record numbers."""

    names: tuple[str, ...] = ()  # display name, family, given, the name in another script, former names
    national_id: str | None = None
    mrns: tuple[str, ...] = ()


def search_keys(source: KeySource) -> dict[str, KeyKind]:
    """Every key (at most KEY_MAX characters) a prefix search may meet, with its kind; an identifier wins over a
    name when both give the same key (it ranks first).

    A name gives its whole normalised form ("zhangwei", "张伟"), each word ("zhang", "wei") and, for two or
    more words, the words in reverse order ("weizhang"): "Wei Zhang", "zhang wei" and "zhangw" all find
    Zhang Wei. A Chinese name also gives its given name (伟 of 张伟, 娜娜 of 欧阳娜娜)."""
    keys: dict[str, KeyKind] = {}

    def add(key: str, kind: KeyKind) -> None:
        key = key[:KEY_MAX]
        if key and (kind is not KeyKind.NAME or key not in keys):
            keys[key] = kind

    for name in source.names:
        words = tokens(name)
        if not words:
            continue
        add("".join(words), KeyKind.NAME)
        for word in words:
            add(word, KeyKind.NAME)
        if len(words) > 1:
            add("".join(reversed(words)), KeyKind.NAME)
        given = han_given_name(words[0]) if len(words) == 1 else None
        if given:
            add(given, KeyKind.NAME)
    if source.national_id:
        add(normalise(source.national_id), KeyKind.NATIONAL_ID)
    for mrn in source.mrns:
        add(normalise(mrn), KeyKind.MRN)
    return keys


def query_terms(query: str, max_terms: int = 4) -> list[str]:
    """The terms a search must all match (by prefix), longest first (the most selective drives the scan);
    a term that is a prefix of another adds nothing and is dropped."""
    words = sorted(set(tokens(query)), key=lambda t: (-len(t), t))
    kept: list[str] = []
    for word in words:
        if not any(other.startswith(word) for other in kept):
            kept.append(word[:KEY_MAX])
    return kept[:max_terms]


def successor(term: str) -> str:
    """The smallest string greater than every string starting with `term`: [term, successor) is the prefix
    range of an index in code point order."""
    for i in range(len(term) - 1, -1, -1):
        cp = ord(term[i])
        if cp < 0x10FFFF:
            nxt = cp + 1
            if 0xD800 <= nxt <= 0xDFFF:  # surrogates are not characters
                nxt = 0xE000
            return term[:i] + chr(nxt)
    raise ValueError(f"no string follows every string starting with {term!r}")


# ---- matching a registration --------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Demographics:
    """What a registration or a check-in says about a person (normalised by `hq.records`)."""

    name: str | None = None  # None: nothing known (a record made from a device's readings)
    family_name: str | None = None
    given_name: str | None = None
    alt_name: str | None = None
    sex: Gender | None = None
    birth_date: dt.date | None = None
    national_id: str | None = None
    phone: str | None = None


@dataclass(frozen=True, slots=True)
class Candidate:
    """An existing record the registration may be: found by national id or by (clinic, record number)."""

    patient_id: int
    demographics: Demographics
    provisional: bool = False  # made from device readings: no demographics to compare


def conflicts(incoming: Demographics, existing: Demographics) -> list[str]:
    """The facts both know and disagree on. Names are compared only in the same script (张伟 and Zhang Wei are
    not a conflict) and without regard to word order, case, spacing or accents."""
    found: list[str] = []
    if incoming.birth_date and existing.birth_date and incoming.birth_date != existing.birth_date:
        found.append(f"birth date {incoming.birth_date.isoformat()} vs {existing.birth_date.isoformat()}")
    known = {Gender.FEMALE, Gender.MALE}
    if incoming.sex in known and existing.sex in known and incoming.sex != existing.sex:
        found.append(f"sex {incoming.sex} vs {existing.sex}")
    if incoming.national_id and existing.national_id and incoming.national_id != existing.national_id:
        found.append(f"national id {incoming.national_id} vs {existing.national_id}")
    if not names_agree(incoming, existing):
        found.append(f"name {incoming.name!r} vs {existing.name!r}")
    return found


def _name_forms(d: Demographics) -> list[str]:
    forms = [d.name, d.alt_name]
    if d.family_name or d.given_name:
        forms.append(f"{d.family_name or ''} {d.given_name or ''}")
    return [f for f in forms if f and f.strip()]


def names_agree(a: Demographics, b: Demographics) -> bool:
    """True unless both have a name in the same script and no form of one equals a form of the other."""
    a_forms, b_forms = _name_forms(a), _name_forms(b)
    if not a_forms or not b_forms:
        return True
    comparable = False
    for x in a_forms:
        for y in b_forms:
            if is_han(x) != is_han(y):
                continue
            comparable = True
            if sorted(tokens(x)) == sorted(tokens(y)) or "".join(tokens(x)) == "".join(tokens(y)):
                return True
    return not comparable


class Action(enum.StrEnum):
    USE = "use"  # an existing record is this patient
    CREATE = "create"  # a new record


@dataclass(frozen=True, slots=True)
class Duplicate:
    other_id: int
    reason: str


@dataclass(frozen=True, slots=True)
class Decision:
    action: Action
    patient_id: int | None = None  # with USE
    attach_mrn: bool = True  # record (clinic, mrn) for the patient (False: it belongs to another record)
    set_national_id: bool = False  # give the record the registration's national id
    fill: dict[str, object] = field(default_factory=dict)  # blank fields of the record to fill in
    duplicates: tuple[Duplicate, ...] = ()  # records a person should look at (the merge screen)

    @property
    def outcome(self) -> str:
        """matched | created | created_possible_duplicate | matched_possible_duplicate: for the clinic."""
        base = "matched" if self.action is Action.USE else "created"
        return f"{base}_possible_duplicate" if self.duplicates else base


FILLABLE = ("family_name", "given_name", "alt_name", "sex", "birth_date", "phone")


def _fill(incoming: Demographics, existing: Candidate) -> dict[str, object]:
    """Blank fields of the record that the registration knows; a provisional record takes the name too."""
    fill: dict[str, object] = {}
    for name in FILLABLE:
        new, old = getattr(incoming, name), getattr(existing.demographics, name)
        if new is not None and old is None:
            fill[name] = new
    if existing.provisional and incoming.name:
        fill["name"] = incoming.name
    return fill


def same_person(incoming: Demographics, existing: Demographics) -> bool:
    """Positively the same: no conflict, and a name in a common script that agrees (not merely no name)."""
    if conflicts(incoming, existing):
        return False
    return any(is_han(x) == is_han(y) and "".join(sorted(tokens(x))) == "".join(sorted(tokens(y)))
               for x in _name_forms(incoming) for y in _name_forms(existing))


def decide(incoming: Demographics, by_national_id: Candidate | None, by_mrn: Candidate | None, *,
           has_mrn: bool = True, earlier_duplicates: tuple[Candidate, ...] = ()) -> Decision:
    """Which record a registration of (clinic, mrn) with `incoming` demographics is.

    1. The national id's record, unless its demographics conflict (then the id may be mistyped: not used).
       The record number is attached to it unless the number already belongs to another record (a duplicate
       candidate: the same person twice, or a number reused).
    2. Else the record number's record, unless its demographics conflict or it holds another national id.
    3. Else a record made by an earlier registration that conflicted the same way (`earlier_duplicates`: open
       duplicate candidates of the records passed over) if it is positively the same person; else a new
       record, with the national id if free, and the record number if free. Every record passed over for a
       conflict becomes a duplicate candidate with the reason.
    """
    duplicates: list[Duplicate] = []
    if by_national_id is not None:
        clash = conflicts(incoming, by_national_id.demographics)
        if not clash:
            if by_mrn is not None and by_mrn.patient_id != by_national_id.patient_id:
                duplicates.append(Duplicate(by_mrn.patient_id, "the national id belongs to one record and the "
                                                               "clinic's record number to another"))
            return Decision(Action.USE, by_national_id.patient_id,
                            attach_mrn=has_mrn and by_mrn is None,
                            fill=_fill(incoming, by_national_id), duplicates=tuple(duplicates))
        duplicates.append(Duplicate(by_national_id.patient_id,
                                    "same national id, conflicting " + "; ".join(clash)))
    if by_mrn is not None and (by_national_id is None or by_mrn.patient_id != by_national_id.patient_id):
        clash = conflicts(incoming, by_mrn.demographics)
        if not clash:
            free_id = incoming.national_id is not None and by_national_id is None \
                and by_mrn.demographics.national_id is None
            return Decision(Action.USE, by_mrn.patient_id, attach_mrn=False, set_national_id=free_id,
                            fill=_fill(incoming, by_mrn), duplicates=tuple(duplicates))
        duplicates.append(Duplicate(by_mrn.patient_id, "same clinic record number, conflicting " + "; ".join(clash)))
    passed_over = {d.other_id for d in duplicates}
    for earlier in earlier_duplicates:
        if earlier.patient_id not in passed_over and same_person(incoming, earlier.demographics):
            return Decision(Action.USE, earlier.patient_id, attach_mrn=False, fill=_fill(incoming, earlier),
                            duplicates=tuple(duplicates))
    return Decision(Action.CREATE, attach_mrn=has_mrn and by_mrn is None,
                    set_national_id=incoming.national_id is not None and by_national_id is None,
                    duplicates=tuple(duplicates))


def pair(a: int, b: int) -> tuple[int, int]:
    """A duplicate pair is stored once, lower id first."""
    return (a, b) if a < b else (b, a)


def unique_ids(ids: Iterable[int]) -> list[int]:
    """Ids in first-seen order without repeats (search hits come once per matching key)."""
    return list(dict.fromkeys(ids))
