"""Consultations through the real HQ (aiohttp app, Mosquitto, SQLite and PostgreSQL): an emergency from a
gateway's event dispatched to the top N, concurrent accepts of which exactly one wins, escalation after T that
survives an HQ restart, the overdue short form, the session with advice and the PDF report, rating and adoption
from the gateway's events, and who may see what."""

from __future__ import annotations

import asyncio
import io
import time
import uuid
from typing import Any

import pytest
import sqlalchemy as sa
from pypdf import PdfReader

from gateway import consultation_wire as cw
from gateway import wire
from hq import db
from hq.models import consultations, dispatch_offers, downlink_messages
from tests.integration.hq.conftest import FakeGateway, RunningHq, eventually, hq_config, running_hq
from tests.support import accounts, consult_experts
from tests.support.mosquitto import Mosquitto

CLINIC = "clinic-a"
EXPERTS = ["wang", "li", "zhao", "qian", "sun"]


def config(broker: Mosquitto, db_url: str, **consult: Any) -> Any:
    lines = "".join(f"{k} = {v}\n" for k, v in {"offers_per_round": 2, "sweep_interval_s": 0.2, **consult}.items())
    return hq_config(broker, db_url, f"[consultations]\n{lines}")


def rows(db_url: str, table: sa.Table, *where: Any) -> list[dict[str, Any]]:
    engine = db.create_engine_for(db_url)
    try:
        with engine.connect() as conn:
            return [dict(r) for r in conn.execute(sa.select(table).where(*where)).mappings()]
    finally:
        engine.dispose()


def consultation(db_url: str, public_id: str) -> dict[str, Any] | None:
    found = rows(db_url, consultations, consultations.c.public_id == public_id)
    return found[0] if found else None


def offers(db_url: str, public_id: str) -> dict[int, str]:
    c = consultation(db_url, public_id)
    assert c is not None
    return {o["expert_id"]: o["outcome"] for o in rows(db_url, dispatch_offers,
                                                      dispatch_offers.c.consultation_id == c["id"])}


def emergency(gw: FakeGateway, seq: int, public_id: str, mrn: str = "P-1") -> wire.Batch:
    vitals = (cw.VitalSign("MDC_PULS_OXIM_SAT_O2", 86.0, "%", int(time.time() * 1000), "ox-1", mrn),)
    request = cw.EmergencyRequest(public_id, int(time.time() * 1000), mrn, ("ox-1",), vitals, "Nurse Li")
    return gw.batch([seq], lane=wire.Lane.ALARM, kind="event", metric=cw.EMERGENCY_REQUESTED,
                    extra=request.extra(), patient_id=mrn)


def tokens(db_url: str, names: list[str]) -> dict[str, str]:
    return {n: accounts.api_token(db_url, n) for n in names}


async def request(hq: RunningHq, token: str | None = None, **body: Any) -> dict[str, Any]:
    created: dict[str, Any] = await hq.send_json("POST", "/api/v1/consultations",
                                                 {"kind": "emergency", "clinic_id": CLINIC, **body}, 201, token)
    return created


async def test_an_emergency_from_a_gateway_goes_to_the_top_n_with_its_vitals(broker: Mosquitto, db_url: str) -> None:
    seeded = consult_experts.seed_experts(db_url, EXPERTS, clinic_id=CLINIC)
    async with running_hq(config(broker, db_url)) as hq, FakeGateway(broker, clinic_id=CLINIC) as gw:
        await gw.send_status()
        pid = uuid.uuid4().hex
        await gw.send(emergency(gw, 1, pid))
        await gw.next_ack()
        await gw.send(emergency(gw, 2, pid))  # the same click again (e.g. replayed): one consultation
        await gw.next_ack()

        async def dispatched() -> bool:
            return len(offers(db_url, pid)) == 2
        await eventually(dispatched, what="two offers")
        c = consultation(db_url, pid)
        assert c is not None and (c["kind"], c["status"], c["gateway_id"]) == ("emergency", "dispatching", "gw-1")
        assert c["vitals"]["gateway"][0]["metric"] == "MDC_PULS_OXIM_SAT_O2" and c["vitals"]["gateway"][0][
            "value"] == 86.0
        assert c["form_due_ms"] == c["requested_ms"] + 600_000 and c["escalation_round"] == 1
        assert set(offers(db_url, pid).values()) == {"pending"}
        assert set(offers(db_url, pid)) <= {e for e, _u in seeded.values()}
        assert len(rows(db_url, consultations)) == 1
        notices = rows(db_url, downlink_messages, downlink_messages.c.kind == cw.NOTICE_UPDATE)
        assert notices and notices[0]["body"]["public_id"] == pid and notices[0]["body"]["offered"] == 2
        listing = await hq.get_json("/api/v1/consultations")
        assert [x["public_id"] for x in listing["consultations"]] == [pid]


async def test_of_concurrent_accepts_exactly_one_wins_and_the_others_are_withdrawn(broker: Mosquitto,
                                                                                  db_url: str) -> None:
    consult_experts.seed_experts(db_url, EXPERTS, clinic_id=CLINIC)
    keys = tokens(db_url, EXPERTS)
    async with running_hq(config(broker, db_url, offers_per_round=5)) as hq:
        for _ in range(4):
            pid = (await request(hq))["public_id"]
            assert len(offers(db_url, pid)) == 5

            async def accept(name: str, pid: str = pid) -> int:
                async with hq.http.post(f"{hq.url}/api/v1/consultations/{pid}/accept",
                                        headers={"Authorization": f"Bearer {keys[name]}"}) as resp:
                    return resp.status

            statuses = await asyncio.gather(*(accept(n) for n in EXPERTS))
            assert sorted(statuses) == [200, 409, 409, 409, 409], statuses
            outcome = offers(db_url, pid)
            assert sorted(outcome.values()) == ["accepted", "withdrawn", "withdrawn", "withdrawn", "withdrawn"]
            c = consultation(db_url, pid)
            assert c is not None and c["status"] == "accepted" and outcome[c["expert_id"]] == "accepted"
        loser = next(n for n, s in zip(EXPERTS, statuses, strict=True) if s == 409)
        async with hq.http.post(f"{hq.url}/api/v1/consultations/{pid}/accept",
                                headers={"Authorization": f"Bearer {keys[loser]}"}) as resp:
            assert resp.status == 409 and "already accepted" in (await resp.json())["error"]


async def test_an_unanswered_round_escalates_after_t_even_when_hq_restarted_meanwhile(broker: Mosquitto,
                                                                                     sqlite_url: str) -> None:
    consult_experts.seed_experts(sqlite_url, EXPERTS, clinic_id=CLINIC)
    accounts.add_user(sqlite_url, "coord", "coordinator")
    settings = config(broker, sqlite_url, offers_per_round=2, offer_timeout_s=1.5)
    async with running_hq(settings) as hq:
        pid = (await request(hq))["public_id"]
        first = set(offers(sqlite_url, pid))
    await asyncio.sleep(2.0)  # the round's T passes while HQ is down
    async with running_hq(settings):
        async def escalated() -> bool:
            c = consultation(sqlite_url, pid)
            return c is not None and c["escalation_round"] == 2
        await eventually(escalated, what="round 2")
        c = consultation(sqlite_url, pid)
        assert c is not None and c["status"] == "escalated" and c["coordinators_notified_ms"] is not None
        outcome = offers(sqlite_url, pid)
        assert {outcome[e] for e in first} == {"expired"}
        assert sorted(o for e, o in outcome.items() if e not in first) == ["pending", "pending"]


async def test_a_short_form_past_its_deadline_is_flagged_overdue(broker: Mosquitto, sqlite_url: str) -> None:
    consult_experts.seed_experts(sqlite_url, EXPERTS[:2], clinic_id=CLINIC)
    async with running_hq(config(broker, sqlite_url, form_deadline_s=0.5)) as hq:
        late = (await request(hq))["public_id"]
        early = (await request(hq, chief_complaint="chest pain"))["public_id"]

        async def flagged() -> bool:
            c = consultation(sqlite_url, late)
            return c is not None and c["form_overdue_ms"] is not None
        await eventually(flagged, what="overdue flag")
        detail = await hq.get_json(f"/api/v1/consultations/{late}")
        assert detail["consultation"]["form_overdue"] is True
        assert (await hq.get_json(f"/api/v1/consultations/{early}"))["consultation"]["form_overdue"] is False
        await hq.send_json("POST", f"/api/v1/consultations/{late}/form", {"question": "transfer?"})
        assert (await hq.get_json(f"/api/v1/consultations/{late}"))["consultation"]["form_overdue"] is False


async def test_the_session_advice_and_report_then_rating_and_adoption_from_the_gateway(broker: Mosquitto,
                                                                                     sqlite_url: str) -> None:
    consult_experts.seed_experts(sqlite_url, ["wang"], clinic_id=CLINIC)
    key = tokens(sqlite_url, ["wang"])["wang"]
    async with running_hq(config(broker, sqlite_url)) as hq, FakeGateway(broker, clinic_id=CLINIC) as gw:
        await gw.send_status()
        pid = uuid.uuid4().hex
        await gw.send(emergency(gw, 1, pid, mrn="P-9"))
        await gw.next_ack()
        await eventually(lambda: _has_offers(sqlite_url, pid), what="offer")
        base = f"/api/v1/consultations/{pid}"
        await hq.send_json("POST", f"{base}/accept", {}, token=key)
        await hq.send_json("POST", f"{base}/stage", {"stage": "identity_check"}, token=key)
        with_stage = await hq.send_json("POST", f"{base}/stage", {"stage": "opinion"}, token=key)
        assert (with_stage["status"], with_stage["stage"]) == ("in_session", "opinion")
        await hq.send_json("POST", f"{base}/stage", {"stage": "discussion"}, 400, token=key)
        await hq.send_json("POST", f"{base}/messages", {"body": "请描述胸痛"}, token=key)
        bad = await hq.send_json("PUT", f"{base}/advice", {"items": [{"kind": "drug", "name": "Aspirin",
                                                                        "dose": "300", "route": "oral",
                                                                        "frequency": "stat",
                                                                        "duration": "single dose"}]}, 400, token=key)
        assert bad["field"] == "items[0].dose"
        await hq.send_json("PUT", f"{base}/advice", {"items": [
            {"kind": "diagnosis", "code": "I21.9"},
            {"kind": "drug", "name": "阿司匹林", "dose": "300 mg", "route": "PO", "frequency": "stat",
             "duration": "single dose"},
            {"kind": "procedure", "name": "Transfer", "steps": ["ECG", "Call 120"]}]}, token=key)
        report = await hq.send_json("POST", f"{base}/report", {"opinion": "考虑急性心肌梗死"}, token=key)
        assert report["version"] == 1
        async with hq.http.get(hq.url + f"{base}/reports/1.pdf") as resp:
            assert resp.status == 200 and resp.content_type == "application/pdf"
            text = PdfReader(io.BytesIO(await resp.read())).pages[0].extract_text()
        for expected in ("I21.9", "阿司匹林", "300 mg", "1. ECG", "2. Call 120", "考虑急性心肌梗死", "Dr. Wang"):
            assert expected in text, expected
        report_notices = rows(sqlite_url, downlink_messages, downlink_messages.c.kind == cw.NOTICE_REPORT)
        assert report_notices[0]["body"]["html"].count("阿司匹林") == 1
        detail = await hq.get_json(base)
        assert [m["body"] for m in detail["messages"] if m["kind"] == "chat"] == ["请描述胸痛"]

        rating = cw.Rating(pid, 5, "fast")
        await gw.send(gw.batch([2], lane=wire.Lane.CONSULT, kind="event", metric=cw.CONSULTATION_RATING,
                               extra=rating.extra()))
        await gw.next_ack()
        await eventually(lambda: _field_is(sqlite_url, pid, "rating", 5), what="rating from the gateway")
        await hq.send_json("POST", f"{base}/adoption", {"adopted": True, "note": "transferred"})
        assert consultation(sqlite_url, pid)["advice_adopted"] is True  # type: ignore[index]


async def _has_offers(db_url: str, pid: str) -> bool:
    return consultation(db_url, pid) is not None and bool(offers(db_url, pid))


async def _field_is(db_url: str, pid: str, name: str, value: Any) -> bool:
    c = consultation(db_url, pid)
    return c is not None and c[name] == value


async def test_clinic_staff_see_their_clinic_and_experts_only_what_was_offered_to_them(broker: Mosquitto,
                                                                                      sqlite_url: str) -> None:
    consult_experts.seed_experts(sqlite_url, ["wang", "li"], clinic_id=CLINIC)
    consult_experts.seed_experts(sqlite_url, [], clinic_id="clinic-b")
    staff_a = accounts.user_with_token(sqlite_url, "nurse-a", "clinic_staff", clinic_id=CLINIC)
    staff_b = accounts.user_with_token(sqlite_url, "nurse-b", "clinic_staff", clinic_id="clinic-b")
    keys = tokens(sqlite_url, ["wang", "li"])
    async with running_hq(config(broker, sqlite_url, offers_per_round=1)) as hq:
        created = await request(hq, staff_a, clinic_id="clinic-b")  # clinic staff request for their own clinic
        assert created["clinic_id"] == CLINIC
        pid = created["public_id"]
        await hq.get_json(f"/api/v1/consultations/{pid}", 404, token=staff_b)
        assert (await hq.get_json("/api/v1/consultations", token=staff_b))["consultations"] == []
        offered = [n for n in ("wang", "li") if (await hq.get_json("/api/v1/offers", token=keys[n]))["offers"]]
        assert len(offered) == 1
        other = "li" if offered == ["wang"] else "wang"
        await hq.get_json(f"/api/v1/consultations/{pid}", 404, token=keys[other])
        await hq.send_json("POST", f"/api/v1/consultations/{pid}/accept", {}, 404, token=keys[other])
        await hq.send_json("POST", "/api/v1/consultations", {"kind": "emergency"}, 403, token=keys[other])


@pytest.mark.parametrize("body", [{"kind": "casual", "clinic_id": CLINIC}, {"kind": "urgent"},
                                  {"kind": "urgent", "clinic_id": CLINIC, "department": "no such department"}])
async def test_a_bad_request_names_its_field(broker: Mosquitto, sqlite_url: str, body: dict[str, Any]) -> None:
    consult_experts.seed_experts(sqlite_url, [], clinic_id=CLINIC)
    async with running_hq(config(broker, sqlite_url)) as hq:
        answer = await hq.send_json("POST", "/api/v1/consultations", body, 400)
        assert answer["field"] in ("kind", "clinic_id", "department")


async def test_cancelling_withdraws_the_open_offers_and_tells_the_clinic(broker: Mosquitto, sqlite_url: str) -> None:
    consult_experts.seed_experts(sqlite_url, EXPERTS[:3], clinic_id=CLINIC)
    async with running_hq(config(broker, sqlite_url)) as hq, FakeGateway(broker, clinic_id=CLINIC) as gw:
        await gw.send_status()
        pid = uuid.uuid4().hex
        await gw.send(emergency(gw, 1, pid))
        await gw.next_ack()
        await eventually(lambda: _has_offers(sqlite_url, pid), what="offers")
        cancelled = await hq.send_json("POST", f"/api/v1/consultations/{pid}/cancel", {"reason": "duplicate call"})
        assert cancelled["status"] == "cancelled"
        assert set(offers(sqlite_url, pid).values()) == {"withdrawn"}
        [notice] = rows(sqlite_url, downlink_messages, downlink_messages.c.kind == cw.NOTICE_WITHDRAWN)
        assert notice["body"] == {"public_id": pid, "reason": "duplicate call"} and notice["gateway_id"] == "gw-1"
        await hq.send_json("POST", f"/api/v1/consultations/{pid}/cancel", {}, 400)
