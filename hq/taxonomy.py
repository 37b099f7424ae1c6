"""The canonical department taxonomy HQ is seeded with, and the normalisation that makes any hospital's name for
a department (心血管内科, 心内科, 心脏内科, "Cardiology", "Dept. of Cardiology") find the one department.

Pure data and functions, no I/O: the database side (resolve, synonyms added by coordinators) is `hq.departments`.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class SeedDepartment:
    code: str  # stable identifier, also a synonym
    name: str  # canonical English display name
    name_zh: str  # canonical Chinese display name
    synonyms: tuple[str, ...]  # other names hospitals use, in Chinese and English; the two names are implied


# The common departments of Chinese and international hospitals. Names hospitals use for the same department
# are synonyms of one entry; where hospitals genuinely split a field (cardiology / cardiac surgery, neurology /
# neurosurgery) the taxonomy does too, because matching a surgeon to a medical question is a wrong match.
SEED: tuple[SeedDepartment, ...] = (
    SeedDepartment("cardiology", "Cardiology", "心血管内科", (
        "心内科", "心脏内科", "心血管科", "心脏科", "心血管病科", "心血管医学科",
        "Cardiovascular Medicine", "Cardiac Medicine", "Cardiovascular Diseases", "Heart Medicine")),
    SeedDepartment("cardiac_surgery", "Cardiac Surgery", "心脏外科", (
        "心外科", "心血管外科", "心胸外科", "Cardiothoracic Surgery", "Cardiovascular Surgery", "Heart Surgery")),
    SeedDepartment("thoracic_surgery", "Thoracic Surgery", "胸外科", ("普胸外科", "General Thoracic Surgery")),
    SeedDepartment("respiratory", "Respiratory Medicine", "呼吸内科", (
        "呼吸科", "呼吸与危重症医学科", "呼吸病科", "Pulmonology", "Pulmonary Medicine", "Respiratory",
        "Pulmonary and Critical Care Medicine", "Chest Medicine")),
    SeedDepartment("gastroenterology", "Gastroenterology", "消化内科", (
        "消化科", "胃肠内科", "消化病科", "Digestive Diseases", "Digestive Medicine", "GI", "Hepatology")),
    SeedDepartment("neurology", "Neurology", "神经内科", ("神经科", "脑病科", "Neurological Medicine")),
    SeedDepartment("neurosurgery", "Neurosurgery", "神经外科", ("脑外科", "Neurological Surgery")),
    SeedDepartment("nephrology", "Nephrology", "肾内科", (
        "肾脏内科", "肾病科", "肾脏病科", "Renal Medicine", "Kidney Diseases")),
    SeedDepartment("endocrinology", "Endocrinology", "内分泌科", (
        "内分泌内科", "内分泌代谢科", "糖尿病科", "Endocrinology and Metabolism", "Diabetes and Endocrinology",
        "Diabetology")),
    SeedDepartment("hematology", "Hematology", "血液内科", ("血液科", "血液病科", "Haematology")),
    SeedDepartment("oncology", "Oncology", "肿瘤科", (
        "肿瘤内科", "肿瘤中心", "Medical Oncology", "Cancer Center", "Cancer Centre")),
    SeedDepartment("rheumatology", "Rheumatology", "风湿免疫科", (
        "风湿科", "免疫科", "Rheumatology and Immunology", "Clinical Immunology")),
    SeedDepartment("infectious_diseases", "Infectious Diseases", "感染科", (
        "感染性疾病科", "传染科", "感染内科", "Infectious Disease", "Infection", "Communicable Diseases")),
    SeedDepartment("internal_medicine", "Internal Medicine", "普通内科", (
        "内科", "大内科", "综合内科", "General Internal Medicine", "General Medicine")),
    SeedDepartment("general_practice", "General Practice", "全科医学科", (
        "全科", "全科医学", "家庭医学科", "Family Medicine", "Family Practice", "Primary Care")),
    SeedDepartment("general_surgery", "General Surgery", "普通外科", ("普外科", "外科", "大外科", "Surgery")),
    SeedDepartment("hepatobiliary_surgery", "Hepatobiliary Surgery", "肝胆外科", (
        "肝胆胰外科", "Hepatobiliary and Pancreatic Surgery", "HPB Surgery")),
    SeedDepartment("vascular_surgery", "Vascular Surgery", "血管外科", ("周围血管外科", "Peripheral Vascular Surgery")),
    SeedDepartment("orthopedics", "Orthopedics", "骨科", (
        "骨外科", "创伤骨科", "Orthopaedics", "Orthopedic Surgery", "Orthopaedic Surgery", "Trauma and Orthopaedics")),
    SeedDepartment("urology", "Urology", "泌尿外科", ("泌尿科", "Urological Surgery")),
    SeedDepartment("plastic_surgery", "Plastic Surgery", "整形外科", (
        "烧伤整形科", "烧伤科", "Burns and Plastic Surgery", "Burns")),
    SeedDepartment("obstetrics_gynecology", "Obstetrics and Gynecology", "妇产科", (
        "妇科", "产科", "OB/GYN", "OBGYN", "Obstetrics & Gynaecology", "Obstetrics", "Gynecology", "Gynaecology")),
    SeedDepartment("pediatrics", "Pediatrics", "儿科", ("小儿科", "儿内科", "Paediatrics", "Child Health")),
    SeedDepartment("neonatology", "Neonatology", "新生儿科", ("新生儿", "NICU", "Neonatal Medicine")),
    SeedDepartment("emergency_medicine", "Emergency Medicine", "急诊科", (
        "急诊医学科", "急诊", "急救中心", "Emergency", "Emergency Department", "A&E", "Accident and Emergency", "ER",
        "ED")),
    SeedDepartment("critical_care", "Critical Care Medicine", "重症医学科", (
        "重症监护室", "ICU", "重症医学", "Intensive Care", "Intensive Care Medicine", "Critical Care")),
    SeedDepartment("anesthesiology", "Anesthesiology", "麻醉科", (
        "麻醉学科", "Anaesthesiology", "Anaesthesia", "Anesthesia", "Anaesthetics")),
    SeedDepartment("dermatology", "Dermatology", "皮肤科", ("皮肤性病科", "Dermatology and Venereology")),
    SeedDepartment("ophthalmology", "Ophthalmology", "眼科", ("Eye", "Eye Clinic")),
    SeedDepartment("otolaryngology", "Otolaryngology", "耳鼻咽喉科", (
        "耳鼻喉科", "耳鼻咽喉头颈外科", "ENT", "Ear Nose and Throat", "Otorhinolaryngology",
        "Otolaryngology Head and Neck Surgery")),
    SeedDepartment("stomatology", "Stomatology", "口腔科", (
        "口腔医学科", "牙科", "Dentistry", "Dental", "Oral Medicine")),
    SeedDepartment("psychiatry", "Psychiatry", "精神科", (
        "精神心理科", "心理科", "精神卫生科", "Mental Health", "Psychological Medicine")),
    SeedDepartment("radiology", "Radiology", "放射科", (
        "影像科", "医学影像科", "放射影像科", "Medical Imaging", "Diagnostic Radiology", "Imaging")),
    SeedDepartment("ultrasound", "Ultrasound", "超声科", ("超声医学科", "B超室", "Ultrasonography", "Sonography")),
    SeedDepartment("nuclear_medicine", "Nuclear Medicine", "核医学科", ("核医学",)),
    SeedDepartment("pathology", "Pathology", "病理科", ("Anatomical Pathology", "Histopathology")),
    SeedDepartment("laboratory_medicine", "Laboratory Medicine", "检验科", (
        "医学检验科", "Clinical Laboratory", "Clinical Pathology", "Laboratory")),
    SeedDepartment("rehabilitation", "Rehabilitation Medicine", "康复医学科", (
        "康复科", "理疗科", "Physical Medicine and Rehabilitation", "PM&R", "Rehabilitation")),
    SeedDepartment("geriatrics", "Geriatrics", "老年医学科", ("老年科", "老年病科", "Geriatric Medicine")),
    SeedDepartment("traditional_chinese_medicine", "Traditional Chinese Medicine", "中医科", (
        "中医", "中西医结合科", "TCM", "Integrated Chinese and Western Medicine")),
)

# Words around a department's name that say nothing about which department it is ("Department of Cardiology",
# "Cardiology Dept.", "心内科室"): tried away after an exact lookup fails. Already normalised.
_PREFIXES = ("department of ", "dept of ", "division of ", "section of ", "service of ", "the ")
_SUFFIXES = (" department", " dept", " division", " section", " service", " unit", " clinic", "室")
_SEPARATORS = re.compile(r"\s+")


def normalise(text: str) -> str:
    """The lookup key of a department name or tag: NFKC (full-width letters and spaces become ASCII), case
    folded, '&' read as 'and', punctuation and symbols as a space, runs of spaces as one, trimmed.

    'Ob/Gyn', 'OB / GYN' and 'ob gyn' share a key; Chinese characters are kept as they are.
    """
    folded = unicodedata.normalize("NFKC", text).casefold().replace("&", " and ")
    cleaned = "".join(" " if unicodedata.category(ch)[0] in "PSZC" else ch for ch in folded)
    return _SEPARATORS.sub(" ", cleaned).strip()


def lookup_keys(name: str) -> list[str]:
    """The keys to try for a name, best first: the name itself, then without words like 'Department of'."""
    key = normalise(name)
    if not key:
        return []
    stripped = key
    for prefix in _PREFIXES:
        stripped = stripped.removeprefix(prefix)
    for suffix in _SUFFIXES:
        stripped = stripped.removesuffix(suffix)
    return [key, stripped] if stripped and stripped != key else [key]


def seed_synonyms(department: SeedDepartment) -> dict[str, str]:
    """normalised key -> display form, for every name of a seeded department (its code and names included)."""
    names = (department.code.replace("_", " "), department.name, department.name_zh, *department.synonyms)
    return {normalise(n): n for n in names}


def check_seed(seed: tuple[SeedDepartment, ...] = SEED) -> None:
    """Raise if two seeded departments share a name: one name must mean one department."""
    owner: dict[str, str] = {}
    for department in seed:
        for key in seed_synonyms(department):
            if owner.setdefault(key, department.code) != department.code:
                raise ValueError(f"{key!r} is a synonym of both {owner[key]} and {department.code}")
