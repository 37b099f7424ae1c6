"""Each role against every other role's data, through the JSON API of the real HQ: a world of two clinics, their
staff, two experts (one with a consultation of a clinic-A patient, one without), a department head, a coordinator
and an admin. Every request below is made as every role and must be allowed exactly where the rules say.

Denied means 403 or 404 (a 404 for a record one may not see does not reveal that it exists).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

import pytest
import sqlalchemy as sa

from hq import consultations, db, records
from hq.clock import now_ms
from hq.models import department_heads, gateways
from tests.integration.hq.conftest import RunningHq, hq_config, running_hq
from tests.support import accounts, directory
from tests.support.consult_experts import add_expert_with_account
from tests.support.mosquitto import Mosquitto

ROLES = ("admin", "coordinator", "head", "expert_on_case", "expert_other", "staff_a", "staff_b")
ALL = set(ROLES)
CHAIN = {"admin", "coordinator", "head"}  # the chain-wide roles


@dataclass
class World:
    tokens: dict[str, str]
    patient_a: int
    patient_b: int
    consultation_a: str  # public id; clinic A, patient A, expert_on_case assigned


def build_world(db_url: str) -> World:
    engine = db.create_engine_for(db_url)
    db.upgrade_schema(engine)
    try:
        with engine.begin() as conn:
            for clinic in ("clinic-a", "clinic-b"):
                directory.add_clinic(conn, clinic)
                conn.execute(gateways.insert().values(id=f"gw-{clinic[-1]}", clinic_id=clinic, state="online",
                                                      first_seen_ms=now_ms(), last_contact_ms=now_ms()))
            dept = directory.add_department(conn, "cardiology")
            on_case, _ = add_expert_with_account(conn, "expert_on_case", dept)
            add_expert_with_account(conn, "expert_other", dept)
            patient_a = records.register_patient(conn, "clinic-a", "MRN-A1", name="Zhang Wei")
            patient_b = records.register_patient(conn, "clinic-b", "MRN-B1", name="Li Na")
            _cid, public_id = consultations.create_scheduled(
                conn, clinic_id="clinic-a", patient_id=patient_a, expert_id=on_case, department_id=dept,
                requested_by_user_id=None, start_ms=now_ms() + 86_400_000)
    finally:
        engine.dispose()
    tokens = {
        "admin": accounts.user_with_token(db_url, "admin", "admin"),
        "coordinator": accounts.user_with_token(db_url, "coordinator", "coordinator"),
        "head": accounts.user_with_token(db_url, "head", "department_head"),
        "expert_on_case": accounts.api_token(db_url, "expert_on_case"),
        "expert_other": accounts.api_token(db_url, "expert_other"),
        "staff_a": accounts.user_with_token(db_url, "staff_a", "clinic_staff", clinic_id="clinic-a"),
        "staff_b": accounts.user_with_token(db_url, "staff_b", "clinic_staff", clinic_id="clinic-b"),
    }
    engine = db.create_engine_for(db_url)
    try:
        with engine.begin() as conn:
            head_id = conn.execute(sa.text("SELECT id FROM users WHERE username = 'head'")).scalar_one()
            conn.execute(department_heads.insert().values(department_id=dept, user_id=head_id))
    finally:
        engine.dispose()
    return World(tokens, patient_a, patient_b, public_id)


async def status_of(hq: RunningHq, token: str, method: str, path: str, body: Any = None) -> int:
    async with hq.http.request(method, hq.url + path, json=body,
                               headers={"Authorization": f"Bearer {token}"}) as resp:
        await resp.read()
        return resp.status


def allowed(status: int) -> bool:
    return 200 <= status < 300


def denied(status: int) -> bool:
    return status in (403, 404)


async def check(hq: RunningHq, world: World, method: str, path: str, may: set[str], body: Any = None) -> None:
    problems = []
    for role in ROLES:
        status = await status_of(hq, world.tokens[role], method, path, body)
        if role in may and not allowed(status):
            problems.append(f"{role} was refused ({status})")
        if role not in may and not denied(status):
            problems.append(f"{role} got {status}, expected 403/404")
    assert not problems, f"{method} {path}: " + "; ".join(problems)


@pytest.fixture
async def world_hq(broker: Mosquitto, sqlite_url: str) -> Any:
    world = await asyncio.to_thread(build_world, sqlite_url)
    async with running_hq(hq_config(broker, sqlite_url)) as hq:
        yield hq, world


async def test_patient_records_are_seen_by_their_clinic_their_experts_and_the_chain(world_hq: Any) -> None:
    hq, w = world_hq
    pa, pb = w.patient_a, w.patient_b
    for path in (f"/api/v1/patients/{pa}", f"/api/v1/patients/{pa}/timeline", f"/api/v1/fhir/Patient/{pa}"):
        await check(hq, w, "GET", path, CHAIN | {"staff_a", "expert_on_case"})
    for path in (f"/api/v1/patients/{pb}", f"/api/v1/patients/{pb}/timeline", f"/api/v1/fhir/Patient/{pb}"):
        await check(hq, w, "GET", path, CHAIN | {"staff_b"})


async def test_searches_return_only_what_the_role_may_see(world_hq: Any) -> None:
    hq, w = world_hq

    async def found(role: str, path: str, key: str) -> set[Any]:
        async with hq.http.get(hq.url + path, headers={"Authorization": f"Bearer {w.tokens[role]}"}) as resp:
            if resp.status in (403, 404):
                return set()
            assert resp.status == 200, (role, path, resp.status, await resp.text())
            body = await resp.json()
        items = body.get(key) or body.get("entry") or []
        return {str(i.get("patient_id") or i.get("id") or i.get("resource", {}).get("id")) for i in items}

    for query in ("/api/v1/patients?q=zhang", "/api/v1/patients?q=li"):
        assert str(w.patient_a) not in await found("staff_b", query, "patients")
        assert str(w.patient_b) not in await found("staff_a", query, "patients")
        assert str(w.patient_b) not in await found("expert_on_case", query, "patients")
        assert (await found("expert_other", query, "patients")) == set()
    assert str(w.patient_a) in await found("coordinator", "/api/v1/patients?q=zhang", "patients")


async def test_consultations_are_seen_by_their_clinic_their_expert_and_the_chain(world_hq: Any) -> None:
    hq, w = world_hq
    c = w.consultation_a
    await check(hq, w, "GET", f"/api/v1/consultations/{c}", CHAIN | {"staff_a", "expert_on_case"})
    await check(hq, w, "GET", f"/api/v1/consultations/{c}/messages", CHAIN | {"staff_a", "expert_on_case"})

    async def listed(role: str) -> set[str]:
        async with hq.http.get(hq.url + "/api/v1/consultations",
                               headers={"Authorization": f"Bearer {w.tokens[role]}"}) as resp:
            if resp.status in (403, 404):
                return set()
            body = await resp.json()
        return {item["public_id"] for item in body["consultations"]}

    assert c in await listed("staff_a") and c in await listed("expert_on_case") and c in await listed("coordinator")
    assert c not in await listed("staff_b") and c not in await listed("expert_other")


async def test_writes_to_a_consultation_need_its_clinic_or_its_expert(world_hq: Any) -> None:
    hq, w = world_hq
    c = w.consultation_a
    for role in ("staff_b", "expert_other"):
        token = w.tokens[role]
        assert denied(await status_of(hq, token, "POST", f"/api/v1/consultations/{c}/messages", {"body": "hi"}))
        assert denied(await status_of(hq, token, "POST", f"/api/v1/consultations/{c}/rating", {"rating": 5}))
        assert denied(await status_of(hq, token, "POST", f"/api/v1/consultations/{c}/cancel", {"reason": "x"}))
    assert allowed(await status_of(hq, w.tokens["expert_on_case"], "POST", f"/api/v1/consultations/{c}/messages",
                                   {"body": "Please send the ECG."}))
    assert allowed(await status_of(hq, w.tokens["staff_a"], "POST", f"/api/v1/consultations/{c}/messages",
                                   {"body": "ECG attached."}))


async def test_fleet_data_is_for_operations_and_each_clinic_sees_its_own(world_hq: Any) -> None:
    hq, w = world_hq
    await check(hq, w, "GET", "/api/v1/gateways?clinic_id=clinic-a", CHAIN | {"staff_a"})
    await check(hq, w, "GET", "/api/v1/gateways?clinic_id=clinic-b", CHAIN | {"staff_b"})
    await check(hq, w, "GET", "/api/v1/observations?clinic_id=clinic-a", CHAIN | {"staff_a"})
    await check(hq, w, "GET", "/api/v1/gateways/gw-a/settings", {"admin", "coordinator"})


async def test_administration_and_fleet_security_are_for_admins_and_coordinators(world_hq: Any) -> None:
    hq, w = world_hq
    for path in ("/api/v1/users", "/api/v1/audit", "/api/v1/audit.csv", "/api/v1/audit/verify"):
        await check(hq, w, "GET", path, {"admin"})
    await check(hq, w, "POST", "/api/v1/users", {"admin"},
                {"username": "new-user", "role": "coordinator", "password": accounts.PASSWORD})
    for role in ALL - {"admin", "coordinator"}:
        status = await status_of(hq, w.tokens[role], "POST", "/api/v1/enrolment-tokens",
                                 {"gateway_id": "gw-new", "clinic_id": "clinic-a"})
        assert denied(status), (role, status)
        status = await status_of(hq, w.tokens[role], "POST", "/api/v1/gateways/gw-a/revoke", {})
        assert denied(status), (role, status)


async def test_the_directory_is_readable_by_all_and_edited_by_coordinators(world_hq: Any) -> None:
    hq, w = world_hq
    await check(hq, w, "GET", "/api/v1/experts", ALL)
    experts = (await hq.get_json("/api/v1/experts"))["experts"]
    other = next(e for e in experts if e["name"] == "Dr. Expert_Other")
    for role in ("staff_a", "staff_b", "expert_on_case", "head"):
        status = await status_of(hq, w.tokens[role], "PATCH", f"/api/v1/experts/{other['id']}",
                                 {"title": "Chief"})
        assert denied(status), (role, status)
    assert allowed(await status_of(hq, w.tokens["expert_other"], "PATCH", f"/api/v1/experts/{other['id']}",
                                   {"title": "Chief"}))  # experts edit their own profile
