"""The key tags of a DICOM instance that the patient timeline shows (who, what study, which modality, when),
read from a pydicom Dataset into plain JSON-ready values, with the checks that make an upload usable.

Pure: no files, no database. `hq.imaging` reads the file and stores it.
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass, field
from typing import Any

from pydicom.dataset import Dataset
from pydicom.uid import UID

UID_PATTERN = re.compile(r"^[0-9]+(\.[0-9]+)*$")
TEXT_MAX = 300

# (keyword, tag) shown on the timeline, in this order.
KEY_TAGS: tuple[tuple[str, str], ...] = (
    ("PatientName", "(0010,0010)"), ("PatientID", "(0010,0020)"), ("PatientBirthDate", "(0010,0030)"),
    ("PatientSex", "(0010,0040)"), ("Modality", "(0008,0060)"), ("StudyDate", "(0008,0020)"),
    ("StudyTime", "(0008,0030)"), ("StudyDescription", "(0008,1030)"), ("SeriesDescription", "(0008,103E)"),
    ("BodyPartExamined", "(0018,0015)"), ("AccessionNumber", "(0008,0050)"), ("InstitutionName", "(0008,0080)"),
    ("Manufacturer", "(0008,0070)"), ("ManufacturerModelName", "(0008,1090)"), ("SOPClassUID", "(0008,0016)"),
    ("StudyInstanceUID", "(0020,000D)"), ("SeriesInstanceUID", "(0020,000E)"), ("SOPInstanceUID", "(0008,0018)"),
    ("Rows", "(0028,0010)"), ("Columns", "(0028,0011)"), ("NumberOfFrames", "(0028,0008)"),
)


class DicomContentError(ValueError):
    """The file is DICOM but not an instance we can file (no SOP Instance UID, a malformed UID, ...)."""


@dataclass(frozen=True, slots=True)
class KeyTags:
    sop_instance_uid: str
    study_instance_uid: str | None
    series_instance_uid: str | None
    modality: str | None
    study_date: dt.date | None
    study_description: str | None
    body_part: str | None
    shown: dict[str, Any] = field(default_factory=dict)  # keyword -> value, for the timeline


def _text(value: Any) -> str | None:
    if value is None:
        return None
    text = str(value).strip().replace("\x00", "")
    return text[:TEXT_MAX] or None


def _uid(ds: Dataset, keyword: str, *, required: bool) -> str | None:
    value = _text(ds.get(keyword))
    if value is None:
        if required:
            tag = dict(KEY_TAGS)[keyword]
            raise DicomContentError(f"it has no {keyword} {tag}: not a DICOM instance that can be filed")
        return None
    if len(value) > 64 or not UID_PATTERN.match(value):
        raise DicomContentError(f"{keyword} {value!r} is not a DICOM UID (digits and dots, at most 64 characters)")
    return value


def _date(value: Any) -> dt.date | None:
    text = _text(value)
    if text is None:
        return None
    try:
        return dt.datetime.strptime(text[:8], "%Y%m%d").date()
    except ValueError:
        return None  # a malformed date is shown as written, not filed


def key_tags(ds: Dataset) -> KeyTags:
    """The tags to file and show. Raises DicomContentError when the instance has no usable SOP Instance UID."""
    sop = _uid(ds, "SOPInstanceUID", required=True)
    assert sop is not None
    shown: dict[str, Any] = {}
    for keyword, _tag in KEY_TAGS:
        value = ds.get(keyword)
        if value is None or value == "":
            continue
        if keyword == "SOPClassUID":
            uid = UID(str(value))
            shown[keyword] = str(uid)
            if uid.is_valid and uid.name != str(uid):
                shown["SOPClassName"] = uid.name  # e.g. "CT Image Storage"
        elif isinstance(value, int):
            shown[keyword] = int(value)
        else:
            text = _text(value)
            if text:
                shown[keyword] = text
    return KeyTags(
        sop_instance_uid=sop, study_instance_uid=_uid(ds, "StudyInstanceUID", required=False),
        series_instance_uid=_uid(ds, "SeriesInstanceUID", required=False),
        modality=_short(ds.get("Modality"), 16), study_date=_date(ds.get("StudyDate")),
        study_description=_text(ds.get("StudyDescription")), body_part=_short(ds.get("BodyPartExamined"), 64),
        shown=shown)


def _short(value: Any, limit: int) -> str | None:
    text = _text(value)
    return None if text is None else text[:limit]
