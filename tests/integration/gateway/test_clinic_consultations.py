"""The clinic's side of consultations on a real outbox (SQLite): a click stores the request in the alarm lane
with the current vitals and the local record in one transaction; HQ's notices move the record forward and a
notice retried after a newer one never moves it back; the form, rating and adoption go to the consult lane."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from gateway import consultation_wire as cw
from gateway.consultations import ClinicConsultations, ConsultationError, Delivery, describe
from gateway.latest_readings import LatestReadings
from gateway.outbox import Entry, Outbox
from gateway.wire import Lane, Notice

NOW = 1_800_000_000_000


@pytest.fixture
async def clinic(tmp_path: Path) -> AsyncIterator[tuple[ClinicConsultations, Outbox]]:
    outbox = Outbox(tmp_path / "outbox.db", "gw-1")
    await outbox.open()
    readings = LatestReadings()
    readings.remember([Entry("observation", "MDC_PULS_OXIM_SAT_O2", 88.0, "%", NOW - 1000, NOW - 1000, "P-1",
                             "ox-1")])
    consultations = ClinicConsultations(outbox, readings, lambda: False, clock=lambda: NOW)
    await consultations.open()
    yield consultations, outbox
    await outbox.close()


async def test_a_click_queues_the_request_with_its_vitals_in_the_alarm_lane(
        clinic: tuple[ClinicConsultations, Outbox]) -> None:
    consultations, outbox = clinic
    public_id = await consultations.request_emergency(mrn="P-1", requested_by="Nurse Li")
    [entry] = await outbox.read_lane(Lane.ALARM, 0, 10)
    request = cw.EmergencyRequest.from_extra(entry.extra)
    assert (entry.metric, entry.patient_id, request.public_id, request.mrn) == (
        cw.EMERGENCY_REQUESTED, "P-1", public_id, "P-1")
    assert [(v.metric, v.value) for v in request.vitals] == [("MDC_PULS_OXIM_SAT_O2", 88.0)]
    row = await consultations.get(public_id)
    assert row is not None and row["request_seq"] == entry.seq and row["request_queued"] is True
    assert describe(row, Delivery(row["request_queued"], False))[0] == "queued"
    await outbox.remove_acked([(Lane.ALARM, entry.seq, entry.seq)])  # HQ committed it
    row = await consultations.get(public_id)
    assert row is not None and describe(row, Delivery(row["request_queued"], True))[0] == "received"


async def test_notices_move_the_record_forward_never_back(clinic: tuple[ClinicConsultations, Outbox]) -> None:
    consultations, _outbox = clinic
    public_id = await consultations.request_emergency(mrn="P-1")
    accepted = Notice(2, cw.NOTICE_ACCEPTED, {"public_id": public_id, "expert_name": "Dr. Wang"}, NOW)
    stale = Notice(1, cw.NOTICE_UPDATE, {"public_id": public_id, "status": "dispatching", "offered": 3}, NOW)
    assert (await consultations.apply_notice(accepted)).outcome == "applied"
    assert (await consultations.apply_notice(stale)).outcome == "applied"
    row = await consultations.get(public_id)
    assert row is not None and row["hq_status"] == "accepted" and row["expert_name"] == "Dr. Wang"
    bad = Notice(3, cw.NOTICE_REPORT, {"public_id": public_id, "version": 1}, NOW)
    assert (await consultations.apply_notice(bad)).outcome == "rejected"
    from_hq = Notice(4, cw.NOTICE_UPDATE, {"public_id": "ab" * 16, "status": "dispatching", "kind": "urgent"}, NOW)
    await consultations.apply_notice(from_hq)
    started_at_hq = await consultations.get("ab" * 16)
    assert started_at_hq is not None and (started_at_hq["origin"], started_at_hq["kind"]) == ("hq", "urgent")


async def test_form_rating_and_adoption_go_to_the_consult_lane(clinic: tuple[ClinicConsultations, Outbox]) -> None:
    consultations, outbox = clinic
    public_id = await consultations.request_emergency()
    with pytest.raises(ConsultationError, match="all empty"):
        await consultations.submit_form(public_id, chief_complaint=" ", preliminary_diagnosis=None, question=None)
    await consultations.submit_form(public_id, chief_complaint="胸痛", preliminary_diagnosis=None, question="转运?")
    await consultations.rate(public_id, 5, "quick")
    await consultations.record_adoption(public_id, True)
    with pytest.raises(ConsultationError, match="no consultation"):
        await consultations.rate("cd" * 16, 3)
    lane = await outbox.read_lane(Lane.CONSULT, 0, 10)
    assert [e.metric for e in lane] == [cw.CONSULTATION_FORM, cw.CONSULTATION_RATING, cw.ADVICE_ADOPTION]
    row = await consultations.get(public_id)
    assert row is not None and row["form_seq"] == lane[0].seq and row["form_queued"] is True
    assert (row["rating"], row["adopted"]) == (5, True)
