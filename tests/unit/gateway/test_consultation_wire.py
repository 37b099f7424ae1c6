"""The consultation events and notices of the gateway-HQ contract: bodies round-trip, bad ones are refused with
the field named."""

from __future__ import annotations

import pytest

from gateway import consultation_wire as cw
from gateway.wire import Lane, WireError

PID = "0123456789abcdef0123456789abcdef"


def test_an_emergency_request_round_trips_with_its_vitals() -> None:
    spo2 = cw.VitalSign("MDC_PULS_OXIM_SAT_O2", 88.0, "%", 1_799_999_999_000, "mon-1", "MRN-7")
    request = cw.EmergencyRequest(PID, 1_800_000_000_000, "MRN-7", ("mon-1",), (spo2,), "Nurse Li")
    assert cw.EmergencyRequest.from_extra(request.extra()) == request
    assert cw.EVENT_LANES[cw.EMERGENCY_REQUESTED] is Lane.ALARM
    assert cw.EVENT_LANES[cw.CONSULTATION_FORM] is Lane.CONSULT


@pytest.mark.parametrize(("extra", "field"), [
    ({"public_id": "XYZ", "clinic_ms": 1}, "public_id"),
    ({"public_id": PID}, "clinic_ms"),
    ({"public_id": PID, "clinic_ms": 1, "devices": "mon-1"}, "devices"),
    ({"public_id": PID, "clinic_ms": 1, "vitals": [{"metric": "X", "value": "high", "time_ms": 1, "device_id": "d"}]},
     "vitals[0].value"),
    ({"public_id": PID, "clinic_ms": True}, "clinic_ms"),
])
def test_a_malformed_emergency_names_the_field(extra: dict[str, object], field: str) -> None:
    with pytest.raises(WireError, match=field.replace("[", r"\[").replace("]", r"\]")):
        cw.EmergencyRequest.from_extra(extra)


def test_forms_ratings_and_adoptions_round_trip_and_check_their_values() -> None:
    form = cw.ShortForm(PID, "chest pain", "ACS?", "thrombolysis?", 5, "urgent")
    assert cw.ShortForm.from_extra(form.extra()) == form
    with pytest.raises(WireError, match="all empty"):
        cw.ShortForm.from_extra(cw.ShortForm(PID, None, None, None, 5).extra())
    with pytest.raises(WireError, match="kind"):
        cw.ShortForm.from_extra({**form.extra(), "kind": "casual"})
    assert cw.Rating.from_extra(cw.Rating(PID, 4, "quick").extra()) == cw.Rating(PID, 4, "quick")
    with pytest.raises(WireError, match="1 to 5"):
        cw.Rating.from_extra({"public_id": PID, "rating": 6})
    assert cw.Adoption.from_extra({"public_id": PID, "adopted": False}) == cw.Adoption(PID, False)
    with pytest.raises(WireError, match="adopted"):
        cw.Adoption.from_extra({"public_id": PID, "adopted": "yes"})


def test_consultation_notices_are_checked_per_kind() -> None:
    accepted = cw.ConsultationNotice.from_body(cw.NOTICE_ACCEPTED, {"public_id": PID, "expert_name": "Dr. Wang"})
    assert accepted.fields == {"expert_name": "Dr. Wang"}
    with pytest.raises(WireError, match="expert_name"):
        cw.ConsultationNotice.from_body(cw.NOTICE_ACCEPTED, {"public_id": PID})
    with pytest.raises(WireError, match="html"):
        cw.ConsultationNotice.from_body(cw.NOTICE_REPORT, {"public_id": PID, "version": 1})
    with pytest.raises(WireError, match="not a consultation notice"):
        cw.ConsultationNotice.from_body("booking_confirmed", {"public_id": PID})
