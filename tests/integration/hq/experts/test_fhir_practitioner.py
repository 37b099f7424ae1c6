"""FHIR R4 Practitioner and PractitionerRole from the real HQ (SQLite and PostgreSQL), every resource validated
with fhir.resources (R4 4.0.1) and its codes checked, searches and scoping like the directory."""

from __future__ import annotations

import asyncio
from typing import Any

from fhir.resources.bundle import Bundle
from fhir.resources.operationoutcome import OperationOutcome
from fhir.resources.practitioner import Practitioner
from fhir.resources.practitionerrole import PractitionerRole

from hq.fhir import common
from hq.fhir import practitioner as fhir_practitioner
from hq.fhir.common import FHIR_JSON
from tests.integration.hq.conftest import RunningHq, hq_config, running_hq
from tests.integration.hq.experts.test_api import token
from tests.support import accounts
from tests.support.mosquitto import Mosquitto

MODELS = {"Practitioner": Practitioner, "PractitionerRole": PractitionerRole}


async def fhir(hq: RunningHq, path: str, who: str, status: int = 200) -> Any:
    async with hq.http.get(hq.url + path, headers={"Authorization": f"Bearer {who}"}) as resp:
        assert resp.status == status, await resp.text()
        assert resp.content_type == FHIR_JSON
        return await resp.json()


async def test_experts_as_practitioners_and_roles(broker: Mosquitto, db_url: str) -> None:
    async with running_hq(hq_config(broker, db_url)) as hq:
        coordinator = await token(hq, "coord", "coordinator")
        staff = await token(hq, "nurse", "clinic_staff", clinic_id="clinic-a")
        li = (await hq.send_json("POST", "/api/v1/experts", {
            "name": "李伟 Li Wei", "department": "心内科", "title": "Chief Physician", "hospital": "Ruijin Hospital",
            "languages": "zh; en-GB", "tags": "arrhythmia; heart failure", "external_ref": "RJ-0042"},
            status=201, token=coordinator))["id"]
        await hq.send_json("POST", f"/api/v1/experts/{li}/credentials", {
            "kind": "medical license", "identifier": "110-2033", "issuer": "NHC", "expires_on": "2028-06-30"},
            status=201, token=coordinator)
        neuro = (await hq.send_json("POST", "/api/v1/experts", {"name": "Dr. Neuro", "department": "Neurology",
                                                                "active": False}, status=201, token=coordinator))["id"]

        doc = await fhir(hq, f"/api/v1/fhir/Practitioner/{li}", coordinator)
        Practitioner.parse_obj(doc)
        assert doc["id"] == str(li) and doc["active"] is True and doc["name"] == [{"use": "official",
                                                                                  "text": "李伟 Li Wei"}]
        assert {(i["system"], i["value"]) for i in doc["identifier"]} == {
            (fhir_practitioner.SYSTEM_EXPERT, str(li)), (fhir_practitioner.SYSTEM_EXPERT_REF, "RJ-0042")}
        assert [c["coding"][0] for c in doc["communication"]] == [
            {"system": "urn:ietf:bcp:47", "code": "zh"}, {"system": "urn:ietf:bcp:47", "code": "en-GB"}]
        assert doc["qualification"] == [{"code": {"text": "medical license"}, "identifier": [{"value": "110-2033"}],
                                         "period": {"end": "2028-06-30"}, "issuer": {"display": "NHC"}}]
        public = await fhir(hq, f"/api/v1/fhir/Practitioner/{li}", staff)
        Practitioner.parse_obj(public)
        assert "qualification" not in public and len(public["identifier"]) == 1

        role = await fhir(hq, f"/api/v1/fhir/PractitionerRole/{li}", staff)
        PractitionerRole.parse_obj(role)
        assert role["practitioner"] == {"reference": f"Practitioner/{li}", "display": "李伟 Li Wei"}
        assert role["specialty"][0]["coding"] == [{"system": common.SYSTEM_DEPARTMENT,
                                                   "code": "cardiology", "display": "Cardiology"}]
        assert [s["text"] for s in role["specialty"][1:]] == ["arrhythmia", "heart failure"]
        assert role["organization"] == {"display": "Ruijin Hospital"} and role["code"] == [{"text": "Chief Physician"}]

        for path, count in (("/api/v1/fhir/Practitioner?name=li%20wei", 1),
                            ("/api/v1/fhir/Practitioner?identifier=urn:clinic-edge:expert-ref|RJ-0042", 1),
                            ("/api/v1/fhir/Practitioner?active=false", 1), ("/api/v1/fhir/Practitioner", 2),
                            ("/api/v1/fhir/PractitionerRole?specialty=cardiology", 1),
                            (f"/api/v1/fhir/PractitionerRole?practitioner=Practitioner/{neuro}", 1),
                            ("/api/v1/fhir/PractitionerRole?specialty=urn:clinic-edge:department|neurology", 1)):
            bundle = await fhir(hq, path, coordinator)
            Bundle.parse_obj(bundle)
            assert bundle["type"] == "searchset" and bundle["total"] == count, path
            wanted = "PractitionerRole" if "/PractitionerRole" in path else "Practitioner"
            for entry in bundle["entry"]:
                assert entry["resource"]["resourceType"] == wanted
                MODELS[wanted].parse_obj(entry["resource"])
        outcome = await fhir(hq, "/api/v1/fhir/Practitioner?colour=red", coordinator, 400)
        OperationOutcome.parse_obj(outcome)
        assert "colour" in outcome["issue"][0]["diagnostics"]
        OperationOutcome.parse_obj(await fhir(hq, "/api/v1/fhir/Practitioner/999999", coordinator, 404))
        await fhir(hq, "/api/v1/fhir/PractitionerRole?specialty=http://snomed.info/sct|394579002", coordinator, 400)


async def test_practitioners_are_scoped_like_the_directory(broker: Mosquitto, sqlite_url: str) -> None:
    async with running_hq(hq_config(broker, sqlite_url)) as hq:
        coordinator = await token(hq, "coord", "coordinator")
        await token(hq, "dr-li", "expert")
        li = (await hq.send_json("POST", "/api/v1/experts", {"name": "Dr. Li", "department": "Cardiology",
                                                             "username": "dr-li"}, status=201, token=coordinator))["id"]
        neuro = (await hq.send_json("POST", "/api/v1/experts", {"name": "Dr. Neuro", "department": "Neurology"},
                                    status=201, token=coordinator))["id"]
        expert = await asyncio.to_thread(accounts.api_token, hq.db_url, "dr-li")
        bundle = await fhir(hq, "/api/v1/fhir/Practitioner", expert)
        assert [e["resource"]["id"] for e in bundle["entry"]] == [str(li)]
        await fhir(hq, f"/api/v1/fhir/Practitioner/{neuro}", expert, 404)
