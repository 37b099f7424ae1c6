"""IEEE 11073-10101 (MDC) code tables: metric and event codes <-> reference ids, units -> UCUM.

Pure lookup data and functions; it is not a full nomenclature, only the codes our devices send.
"""

from __future__ import annotations

from collections.abc import Sequence

# Numeric codes are partition * 2**16 + term code, as HL7 PCD-01 carries them in OBX-3
# ("150456^MDC_PULS_OXIM_SAT_O2^MDC"). Checked against IEEE 11073-10101 term tables
# (SCADA partition 2, DIM partition 4, EVT partition 3, attributes partition 1).
METRICS: dict[int, str] = {
    150456: "MDC_PULS_OXIM_SAT_O2",
    149530: "MDC_PULS_OXIM_PULS_RATE",
    150448: "MDC_PULS_OXIM_PERF_REL",
    150452: "MDC_PULS_OXIM_PLETH",
    147842: "MDC_ECG_HEART_RATE",
    149514: "MDC_PULS_RATE",
    149546: "MDC_PULS_RATE_NON_INV",
    131329: "MDC_ECG_ELEC_POTL_I",
    131330: "MDC_ECG_ELEC_POTL_II",
    131389: "MDC_ECG_ELEC_POTL_III",
    151562: "MDC_RESP_RATE",
    151570: "MDC_AWAY_RESP_RATE",
    151594: "MDC_CO2_RESP_RATE",
    150020: "MDC_PRESS_BLD_NONINV",
    150021: "MDC_PRESS_BLD_NONINV_SYS",
    150022: "MDC_PRESS_BLD_NONINV_DIA",
    150023: "MDC_PRESS_BLD_NONINV_MEAN",
    150301: "MDC_PRESS_CUFF_SYS",
    150302: "MDC_PRESS_CUFF_DIA",
    150303: "MDC_PRESS_CUFF_MEAN",
    150033: "MDC_PRESS_BLD_ART_SYS",
    150034: "MDC_PRESS_BLD_ART_DIA",
    150035: "MDC_PRESS_BLD_ART_MEAN",
    150037: "MDC_PRESS_BLD_ART_ABP_SYS",
    150038: "MDC_PRESS_BLD_ART_ABP_DIA",
    150039: "MDC_PRESS_BLD_ART_ABP_MEAN",
    150344: "MDC_TEMP",
    150364: "MDC_TEMP_BODY",
    150392: "MDC_TEMP_TYMP",
    188420: "MDC_TEMP_RECT",
    188424: "MDC_TEMP_ORAL",
    188452: "MDC_TEMP_AXILLA",
    151708: "MDC_CONC_AWAY_CO2_ET",
    151728: "MDC_AWAY_CO2_ET",
    160020: "MDC_CONC_GLU_GEN",
    160184: "MDC_CONC_GLU_CAPILLARY_WHOLEBLOOD",
    160188: "MDC_CONC_GLU_CAPILLARY_PLASMA",
    188736: "MDC_MASS_BODY_ACTUAL",
    188740: "MDC_LEN_BODY_ACTUAL",
    188752: "MDC_RATIO_MASS_BODY_LEN_SQ",
    67981: "MDC_ATTR_TIME_PD_SAMP",
}

EVENTS: dict[int, str] = {
    196616: "MDC_EVT_ALARM",
    196648: "MDC_EVT_HI",
    196650: "MDC_EVT_HI_GT_LIM",
    196652: "MDC_EVT_HI_VAL_GT_LIM",
    196670: "MDC_EVT_LO",
    196672: "MDC_EVT_LO_LT_LIM",
    196674: "MDC_EVT_LO_VAL_LT_LIM",
    196802: "MDC_EVT_BATT_LO",
    196880: "MDC_EVT_LEAD_OFF",
    196916: "MDC_EVT_SENSOR_DISCONN",
    199680: "MDC_EVT_APNEA",
    199684: "MDC_EVT_ECG_ASYSTOLE",
    199728: "MDC_EVT_ECG_TACHY",
}

# PCD-04 alert attributes (partition 1): which OBX of an alarm group says what.
ATTR_ALERT_SOURCE = 68480
ATTR_EVENT_PHASE = 68481
ATTR_ALARM_STATE = 68482
ATTR_ALARM_INACTIVATION_STATE = 68483
ATTR_ALARM_PRIORITY = 68484
ATTR_ALERT_TYPE = 68485
ATTR_ALERT_TEXT = 68546
ATTRIBUTES: dict[int, str] = {
    ATTR_ALERT_SOURCE: "MDC_ATTR_ALERT_SOURCE",
    ATTR_EVENT_PHASE: "MDC_ATTR_EVENT_PHASE",
    ATTR_ALARM_STATE: "MDC_ATTR_ALARM_STATE",
    ATTR_ALARM_INACTIVATION_STATE: "MDC_ATTR_ALARM_INACTIVATION_STATE",
    ATTR_ALARM_PRIORITY: "MDC_ATTR_ALARM_PRIORITY",
    ATTR_ALERT_TYPE: "MDC_ATTR_ALERT_TYPE",
    ATTR_ALERT_TEXT: "MDC_ATTR_ALERT_TEXT",
}
# Some senders spell the phase attribute with EVT instead of EVENT.
_ATTRIBUTE_ALIASES = {"MDC_ATTR_EVT_PHASE": ATTR_EVENT_PHASE}

# MDC unit code -> (reference id, UCUM).
UNITS: dict[int, tuple[str, str]] = {
    262656: ("MDC_DIM_DIMLESS", "1"),
    262688: ("MDC_DIM_PERCENT", "%"),
    264864: ("MDC_DIM_BEAT_PER_MIN", "/min"),
    264896: ("MDC_DIM_PULS_PER_MIN", "/min"),
    264928: ("MDC_DIM_RESP_PER_MIN", "/min"),
    264672: ("MDC_DIM_PER_MIN", "/min"),
    266016: ("MDC_DIM_MMHG", "mm[Hg]"),
    265987: ("MDC_DIM_KILO_PASCAL", "kPa"),
    266048: ("MDC_DIM_CM_H2O", "cm[H2O]"),
    268192: ("MDC_DIM_DEGC", "Cel"),
    266560: ("MDC_DIM_FAHR", "[degF]"),
    264274: ("MDC_DIM_MILLI_G_PER_DL", "mg/dL"),
    266866: ("MDC_DIM_MILLI_MOLE_PER_L", "mmol/L"),
    263875: ("MDC_DIM_KILO_G", "kg"),
    263872: ("MDC_DIM_X_G", "g"),
    263904: ("MDC_DIM_LB", "[lb_av]"),
    263441: ("MDC_DIM_CENTI_M", "cm"),
    264320: ("MDC_DIM_SEC", "s"),
    264338: ("MDC_DIM_MILLI_SEC", "ms"),
    266418: ("MDC_DIM_MILLI_VOLT", "mV"),
    266419: ("MDC_DIM_MICRO_VOLT", "uV"),
    265216: ("MDC_DIM_X_L_PER_MIN", "L/min"),
    263762: ("MDC_DIM_MILLI_L", "mL"),
    264640: ("MDC_DIM_HZ", "Hz"),
}

# Plain spellings seen on device displays and in non-MDC OBX-6 fields, keyed lower-case.
_PLAIN_UNITS: dict[str, str] = {
    "%": "%",
    "percent": "%",
    "bpm": "/min",
    "/min": "/min",
    "1/min": "/min",
    "{beats}/min": "/min",
    "{beat}/min": "/min",
    "rpm": "/min",
    "brpm": "/min",
    "br/min": "/min",
    "breaths/min": "/min",
    "{breaths}/min": "/min",
    "{breath}/min": "/min",
    "mmhg": "mm[Hg]",
    "mm hg": "mm[Hg]",
    "mm[hg]": "mm[Hg]",
    "kpa": "kPa",
    "cmh2o": "cm[H2O]",
    "cm[h2o]": "cm[H2O]",
    "degc": "Cel",
    "c": "Cel",
    "°c": "Cel",
    "cel": "Cel",
    "degf": "[degF]",
    "f": "[degF]",
    "°f": "[degF]",
    "[degf]": "[degF]",
    "mg/dl": "mg/dL",
    "mmol/l": "mmol/L",
    "kg": "kg",
    "g": "g",
    "lb": "[lb_av]",
    "lbs": "[lb_av]",
    "[lb_av]": "[lb_av]",
    "cm": "cm",
    "s": "s",
    "ms": "ms",
    "mv": "mV",
    "uv": "uV",
    "l/min": "L/min",
    "ml": "mL",
    "hz": "Hz",
}

_METRIC_CODES = {ref: code for code, ref in METRICS.items()}
_EVENT_CODES = {ref: code for code, ref in EVENTS.items()}
_ATTRIBUTE_CODES = {ref: code for code, ref in ATTRIBUTES.items()} | _ATTRIBUTE_ALIASES
_UNIT_BY_REF = {ref: ucum for ref, ucum in UNITS.values()}
# Encoder direction: the first MDC unit listed for a UCUM unit wins (so "/min" -> beats/min).
_UNIT_BY_UCUM: dict[str, tuple[int, str]] = {}
for _code, (_ref, _ucum) in UNITS.items():
    _UNIT_BY_UCUM.setdefault(_ucum, (_code, _ref))

EVENT_PARTITION_START = 3 << 16
EVENT_PARTITION_END = 4 << 16


def _int_code(code: str | None) -> int | None:
    if code and code.isdigit() and len(code) <= 9:
        return int(code)
    return None


def metric_for(code: str | None, ref: str | None) -> str | None:
    """The MDC reference id of an observation identifier (OBX-3 code and text components).

    The reference id wins when the sender gives one; otherwise a known numeric code is mapped.
    Returns None when neither identifies an MDC term (the caller decides how to name it).
    """
    if ref and ref.startswith("MDC"):
        return ref
    number = _int_code(code)
    if number is not None:
        return METRICS.get(number) or EVENTS.get(number) or ATTRIBUTES.get(number)
    return None


def metric_code(ref: str) -> int | None:
    """The numeric MDC code of a metric reference id, if this table knows it."""
    return _METRIC_CODES.get(ref)


def event_code(ref: str) -> int | None:
    return _EVENT_CODES.get(ref)


def attribute_code(code: str | None, ref: str | None) -> int | None:
    """The PCD-04 alert attribute an identifier names (ATTR_* constants), or None."""
    number = _int_code(code)
    if number is not None and number in ATTRIBUTES:
        return number
    if ref:
        return _ATTRIBUTE_CODES.get(ref)
    return None


def is_event(code: str | None, ref: str | None) -> bool:
    """Whether an identifier names an MDC event (an alarm condition such as MDC_EVT_HI)."""
    if ref and ref.startswith("MDC_EVT_"):
        return True
    number = _int_code(code)
    return number is not None and EVENT_PARTITION_START <= number < EVENT_PARTITION_END


def ucum_for(components: Sequence[str]) -> str | None:
    """UCUM for an OBX-6 units field given as its components (identifier, text, coding system, ...).

    Understands MDC numeric unit codes, MDC_DIM_* reference ids, UCUM-coded units and common plain
    spellings ("bpm", "mmHg", "degC"). Returns None when the unit is not recognised.
    """
    ident = components[0] if components else ""
    text = components[1] if len(components) > 1 else ""
    system = components[2] if len(components) > 2 else ""
    # PCD-01 allows the alternate identifier triplet (components 4-6) to carry the UCUM form.
    if len(components) > 5 and components[5].upper() == "UCUM" and components[3]:
        return components[3]
    if system.upper() == "UCUM" and ident:
        return ident
    number = _int_code(ident)
    if number is not None and number in UNITS:
        return UNITS[number][1]
    for candidate in (ident, text):
        if not candidate:
            continue
        ucum = _UNIT_BY_REF.get(candidate) or _PLAIN_UNITS.get(candidate.lower())
        if ucum is not None:
            return ucum
    return None


def mdc_unit_for(ucum: str) -> tuple[int, str] | None:
    """(MDC unit code, reference id) for a UCUM unit, used by the encoders; None if unmapped."""
    return _UNIT_BY_UCUM.get(ucum)
