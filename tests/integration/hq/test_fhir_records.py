"""FHIR R4 Patient and Observation exports on a running HQ (SQLite and PostgreSQL), every resource validated
with fhir.resources (R4 4.0.1 models) and its codes asserted (they are not checked by the models): identifiers
of every clinic, names in both scripts, merge links, vital signs in MDC and LOINC with UCUM quantities;
searches scoped to what the caller may see."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from fhir.resources.bundle import Bundle
from fhir.resources.observation import Observation
from fhir.resources.patient import Patient

from gateway import wire
from hq.fhir import common
from hq.fhir.observation import observation_id, split_id
from tests.integration.hq.conftest import FakeGateway, RunningHq, hq_config, running_hq
from tests.integration.hq.records_support import add_clinics
from tests.support import accounts
from tests.support.mosquitto import Mosquitto

T0 = 1_764_547_200_000  # 2025-12-01T00:00:00Z
FHIR = "application/fhir+json"


async def fhir(hq: RunningHq, path: str, status: int = 200, token: str | None = None) -> dict[str, Any]:
    headers = {"Authorization": f"Bearer {token}"} if token else None
    async with hq.http.get(hq.url + path, headers=headers) as resp:
        assert resp.status == status, await resp.text()
        assert resp.headers["Content-Type"].startswith(FHIR)
        return dict(await resp.json())


async def seed(hq: RunningHq, gw: FakeGateway) -> tuple[int, int]:
    spo2 = gw.batch(range(1, 4), patient_id="A-1", value=96, time_ms=T0)
    pulse = gw.batch(range(4, 6), patient_id="A-1", metric="MDC_PULS_OXIM_PULS_RATE", value=72,
                     time_ms=T0 + 86_400_000)
    alarm = gw.batch([6], patient_id="A-1", kind="alarm", lane=wire.Lane.ALARM, time_ms=T0,
                     extra={"alarm": {"text": "low"}})
    for batch in (spo2, pulse, alarm):
        await gw.send(batch)
        await gw.next_ack()
    await asyncio.to_thread(add_clinics, hq.db_url, "clinic-b")
    a = await hq.send_json("POST", "/api/v1/patients", {"clinic_id": "clinic-a", "mrn": "A-1", "name": "张伟",
                                                        "family_name": "张", "given_name": "伟",
                                                        "alt_name": "Zhang Wei", "sex": "male",
                                                        "birth_date": "1990-03-07", "national_id": "N-1",
                                                        "phone": "555"}, status=201)
    b = await hq.send_json("POST", "/api/v1/patients", {"clinic_id": "clinic-a", "mrn": "A-2", "name": "Zhang Wei",
                                                        "birth_date": "1990-03-07"}, status=201)
    return a["patient"]["patient_id"], b["patient"]["patient_id"]


async def test_patient_resources_validate_and_carry_identifiers_names_and_merges(
        broker: Mosquitto, db_url: str, tmp_path: Path) -> None:
    async with running_hq(hq_config(broker, db_url)) as hq, FakeGateway(broker) as gw:
        a, b = await seed(hq, gw)
        doc = await fhir(hq, f"/api/v1/fhir/Patient/{a}")
        Patient.parse_obj(doc)
        assert doc["gender"] == "male" and doc["birthDate"] == "1990-03-07" and doc["active"] is True
        assert {(i["system"], i["value"]) for i in doc["identifier"]} == {
            ("urn:clinic-edge:hq:patient", str(a)), (common.SYSTEM_NATIONAL_ID, "N1"),
            (common.mrn_system("clinic-a"), "A-1")}
        assert doc["name"] == [{"use": "official", "text": "张伟", "family": "张", "given": ["伟"]},
                               {"use": "usual", "text": "Zhang Wei"}]
        assert doc["telecom"] == [{"system": "phone", "value": "555"}]

        await hq.send_json("POST", "/api/v1/patients/merges", {"survivor_id": a, "merged_id": b}, status=201)
        survivor, merged = await fhir(hq, f"/api/v1/fhir/Patient/{a}"), await fhir(hq, f"/api/v1/fhir/Patient/{b}")
        Patient.parse_obj(survivor)
        Patient.parse_obj(merged)
        assert survivor["link"] == [{"other": {"reference": f"Patient/{b}"}, "type": "replaces"}]
        assert merged["active"] is False and merged["link"] == [{"other": {"reference": f"Patient/{a}"},
                                                                  "type": "replaced-by"}]
        assert {i["value"] for i in survivor["identifier"]} >= {"A-1", "A-2"}

        for query, expected in ((f"identifier={common.mrn_system('clinic-a')}|A-2", [a]),
                                (f"identifier={common.SYSTEM_NATIONAL_ID}|n-1", [a]), ("identifier=A-1", [a]),
                                ("name=zhang%20wei", [a]), ("birthdate=1990-03-07", [a, b]),
                                ("gender=male", [a]), (f"_id={a}", [a])):
            bundle = await fhir(hq, f"/api/v1/fhir/Patient?{query}")
            Bundle.parse_obj(bundle)
            assert bundle["type"] == "searchset"
            assert [int(e["resource"]["id"]) for e in bundle.get("entry", [])] == expected, query
        for query in ("colour=red", "gender=f", "birthdate=03/07/1990", "identifier=urn:other|1", ""):
            outcome = await fhir(hq, f"/api/v1/fhir/Patient?{query}", status=400)
            assert outcome["resourceType"] == "OperationOutcome"
        staff_b = await asyncio.to_thread(accounts.user_with_token, hq.db_url, "nurse-b", "clinic_staff",
                                          clinic_id="clinic-b")
        await fhir(hq, f"/api/v1/fhir/Patient/{a}", status=404, token=staff_b)
        assert not (await fhir(hq, "/api/v1/fhir/Patient?name=zhang", token=staff_b)).get("entry")


async def test_observation_resources_validate_with_mdc_loinc_and_ucum(
        broker: Mosquitto, db_url: str, tmp_path: Path) -> None:
    async with running_hq(hq_config(broker, db_url)) as hq, FakeGateway(broker) as gw:
        a, _b = await seed(hq, gw)
        bundle = await fhir(hq, f"/api/v1/fhir/Observation?patient={a}")
        Bundle.parse_obj(bundle)
        resources = [e["resource"] for e in bundle["entry"]]
        assert len(resources) == 5  # the alarm is not a reading
        for r in resources:
            Observation.parse_obj(r)
            assert r["status"] == "final" and r["category"][0]["coding"][0]["code"] == "vital-signs"
            assert r["subject"] == {"reference": f"Patient/{a}"}
        assert [r["effectiveDateTime"][:10] for r in resources] == ["2025-12-02"] * 2 + ["2025-12-01"] * 3
        spo2 = resources[-1]
        assert spo2["code"]["coding"][0] == {"system": "http://loinc.org", "code": "59408-5",
                                             "display": "Oxygen saturation in Arterial blood by Pulse oximetry"}
        assert spo2["code"]["coding"][1] == {"system": "urn:iso:std:iso:11073:10101", "code": "150456",
                                             "display": "MDC_PULS_OXIM_SAT_O2"}
        assert spo2["valueQuantity"] == {"value": 96.0, "unit": "%", "system": "http://unitsofmeasure.org",
                                         "code": "%"}
        one = await fhir(hq, f"/api/v1/fhir/Observation/{spo2['id']}")
        Observation.parse_obj(one)
        assert one == spo2 and split_id(spo2["id"]) == ("gw-1", 1)

        pulse = await fhir(hq, f"/api/v1/fhir/Observation?patient={a}&code=http://loinc.org|8867-4")
        assert [e["resource"]["valueQuantity"]["value"] for e in pulse["entry"]] == [72.0, 72.0]
        by_mdc = await fhir(hq, f"/api/v1/fhir/Observation?subject=Patient/{a}&code=150456&_count=2")
        assert len(by_mdc["entry"]) == 2
        day = await fhir(hq, f"/api/v1/fhir/Observation?patient={a}&date=ge2025-12-02")
        assert len(day["entry"]) == 2
        window = await fhir(hq, f"/api/v1/fhir/Observation?patient={a}&date=ge2025-12-01&date=lt2025-12-02")
        assert len(window["entry"]) == 3
        for query in ("", "patient=x", f"patient={a}&code=nonsense", f"patient={a}&date=yesterday", "colour=1"):
            assert (await fhir(hq, f"/api/v1/fhir/Observation?{query}", status=400))["resourceType"] == \
                "OperationOutcome"
        await fhir(hq, "/api/v1/fhir/Observation/gw-1.999", status=404)
        staff_b = await asyncio.to_thread(accounts.user_with_token, hq.db_url, "nurse-b", "clinic_staff",
                                          clinic_id="clinic-b")
        await fhir(hq, f"/api/v1/fhir/Observation/{spo2['id']}", status=404, token=staff_b)
        await fhir(hq, f"/api/v1/fhir/Observation?patient={a}", status=404, token=staff_b)


def test_observation_ids_fhir_cannot_carry_go_by_the_gateways_hash() -> None:
    assert observation_id("gw-north-1", 42) == "gw-north-1.42"
    hashed = observation_id("gw_north", 42)
    assert hashed.startswith("x") and hashed.endswith(".42") and "_" not in hashed
    assert len(observation_id("g" * 64, 10**12)) <= 64
