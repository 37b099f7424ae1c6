"""Code tables: MDC metric and unit lookups."""

from devices import codes


def test_reference_id_wins_over_numeric_code() -> None:
    assert codes.metric_for("150456", "MDC_PULS_OXIM_SAT_O2") == "MDC_PULS_OXIM_SAT_O2"
    assert codes.metric_for("999", "MDC_SOMETHING_NEW") == "MDC_SOMETHING_NEW"


def test_numeric_code_without_reference_id_is_mapped() -> None:
    assert codes.metric_for("150456", "") == "MDC_PULS_OXIM_SAT_O2"
    assert codes.metric_for("147842", None) == "MDC_ECG_HEART_RATE"
    assert codes.metric_for("150021", "") == "MDC_PRESS_BLD_NONINV_SYS"
    assert codes.metric_for("150448", "") == "MDC_PULS_OXIM_PERF_REL"
    assert codes.metric_for("42", "") is None
    assert codes.metric_for("", "") is None


def test_common_vitals_are_covered_in_both_directions() -> None:
    for ref in [
        "MDC_PULS_OXIM_SAT_O2",
        "MDC_PULS_OXIM_PULS_RATE",
        "MDC_ECG_HEART_RATE",
        "MDC_RESP_RATE",
        "MDC_PRESS_BLD_NONINV_SYS",
        "MDC_PRESS_BLD_NONINV_DIA",
        "MDC_PRESS_BLD_NONINV_MEAN",
        "MDC_PRESS_BLD_ART_ABP_SYS",
        "MDC_PRESS_BLD_ART_ABP_DIA",
        "MDC_PRESS_BLD_ART_ABP_MEAN",
        "MDC_TEMP_BODY",
        "MDC_TEMP",
        "MDC_AWAY_CO2_ET",
        "MDC_PULS_OXIM_PERF_REL",
        "MDC_CONC_GLU_CAPILLARY_WHOLEBLOOD",
        "MDC_MASS_BODY_ACTUAL",
    ]:
        code = codes.metric_code(ref)
        assert code is not None, ref
        assert codes.metric_for(str(code), "") == ref


def test_mdc_unit_codes_map_to_ucum() -> None:
    assert codes.ucum_for(["262688", "MDC_DIM_PERCENT", "MDC"]) == "%"
    assert codes.ucum_for(["264864", "MDC_DIM_BEAT_PER_MIN", "MDC"]) == "/min"
    assert codes.ucum_for(["264928", "", "MDC"]) == "/min"
    assert codes.ucum_for(["266016"]) == "mm[Hg]"
    assert codes.ucum_for(["268192", "MDC_DIM_DEGC", "MDC"]) == "Cel"
    assert codes.ucum_for(["265987"]) == "kPa"
    assert codes.ucum_for(["264274"]) == "mg/dL"
    assert codes.ucum_for(["266866"]) == "mmol/L"
    assert codes.ucum_for(["263875"]) == "kg"


def test_unit_reference_ids_plain_strings_and_ucum_coded_units() -> None:
    assert codes.ucum_for(["", "MDC_DIM_MMHG", "MDC"]) == "mm[Hg]"
    assert codes.ucum_for(["bpm"]) == "/min"
    assert codes.ucum_for(["mmHg"]) == "mm[Hg]"
    assert codes.ucum_for(["%"]) == "%"
    assert codes.ucum_for(["degC"]) == "Cel"
    assert codes.ucum_for(["C"]) == "Cel"
    assert codes.ucum_for(["mm[Hg]", "mm[Hg]", "UCUM"]) == "mm[Hg]"
    assert codes.ucum_for(["262688", "MDC_DIM_PERCENT", "MDC", "%", "%", "UCUM"]) == "%"
    assert codes.ucum_for(["furlongs"]) is None
    assert codes.ucum_for([]) is None


def test_events_and_alert_attributes() -> None:
    assert codes.is_event("196648", "MDC_EVT_HI")
    assert codes.is_event("196670", "")
    assert not codes.is_event("150456", "MDC_PULS_OXIM_SAT_O2")
    assert codes.metric_for("196616", "") == "MDC_EVT_ALARM"
    assert codes.attribute_code("68481", "MDC_ATTR_EVENT_PHASE") == codes.ATTR_EVENT_PHASE
    assert codes.attribute_code("", "MDC_ATTR_EVT_PHASE") == codes.ATTR_EVENT_PHASE
    assert codes.attribute_code("150456", "") is None
