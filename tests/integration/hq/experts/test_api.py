"""The directory's JSON API and pages against the real HQ app (SQLite and PostgreSQL): coordinators manage,
experts edit their own profile, department heads see their departments, clinic staff the public profiles;
every change is in the audit log."""

from __future__ import annotations

import asyncio
import time

import aiohttp
import sqlalchemy as sa

from hq import db
from hq.models import audit_log, clinics, consultations
from tests.integration.hq.conftest import RunningHq, hq_config, running_hq
from tests.support import accounts
from tests.support.mosquitto import Mosquitto


def audit_actions(db_url: str) -> list[tuple[str, str, str | None]]:
    engine = db.create_engine_for(db_url)
    try:
        with engine.connect() as conn:
            return [(r.actor, r.action, r.target_id) for r in conn.execute(
                sa.select(audit_log.c.actor, audit_log.c.action, audit_log.c.target_id).order_by(audit_log.c.id))]
    finally:
        engine.dispose()


def add_clinic(db_url: str, clinic_id: str) -> None:
    engine = db.create_engine_for(db_url)
    try:
        with engine.begin() as conn:
            if conn.execute(sa.select(clinics.c.id).where(clinics.c.id == clinic_id)).first() is None:
                conn.execute(clinics.insert().values(id=clinic_id, name=clinic_id))
    finally:
        engine.dispose()


async def token(hq: RunningHq, username: str, role: str, clinic_id: str | None = None) -> str:
    if clinic_id is not None:
        await asyncio.to_thread(add_clinic, hq.db_url, clinic_id)
    return await asyncio.to_thread(accounts.user_with_token, hq.db_url, username, role, clinic_id=clinic_id)


async def test_coordinators_manage_profiles_and_credentials_all_audited(broker: Mosquitto, db_url: str) -> None:
    async with running_hq(hq_config(broker, db_url)) as hq:
        coordinator = await token(hq, "coord", "coordinator")
        created = await hq.send_json("POST", "/api/v1/experts", {
            "name": "Dr. Li Wei", "department": "心脏内科", "languages": "zh; en", "tags": ["Arrhythmia"],
            "time_zone": "Asia/Shanghai", "daily_cap": 6, "external_ref": "R-1"}, status=201, token=coordinator)
        expert_id = created["id"]
        assert created["department"]["code"] == "cardiology" and created["languages"] == ["zh", "en"]
        assert [f["code"] for f in created["review"]] == ["no_credentials"]
        bad = await hq.send_json("POST", "/api/v1/experts", {"name": "X", "department": "Astrology"}, status=400,
                                 token=coordinator)
        assert bad["field"] == "department" and "心内科" in bad["expected"]
        bad = await hq.send_json("PATCH", f"/api/v1/experts/{expert_id}", {"time_zone": "Mars/Olympus"}, status=400,
                                 token=coordinator)
        assert bad["field"] == "time_zone"
        changed = await hq.send_json("PATCH", f"/api/v1/experts/{expert_id}", {"daily_cap": 4, "title": "Chief"},
                                     token=coordinator)
        assert changed["changed"] == ["daily_cap", "title"] and changed["daily_cap"] == 4
        credential = await hq.send_json("POST", f"/api/v1/experts/{expert_id}/credentials", {
            "kind": "medical license", "identifier": "110-1", "expires_on": "2020-01-01"}, status=201,
            token=coordinator)
        assert credential["valid"] is False
        profile = await hq.get_json(f"/api/v1/experts/{expert_id}", token=coordinator)
        assert [f["code"] for f in profile["review"]] == ["credential_expired"]
        renewed = await hq.send_json("PATCH", f"/api/v1/experts/{expert_id}/credentials/{credential['id']}",
                                     {"expires_on": "2099-12-31"}, token=coordinator)
        assert renewed["valid"] and renewed["changed"] == ["expires_on"]
        reviewed = await hq.send_json("POST", f"/api/v1/experts/{expert_id}/review", {}, token=coordinator)
        assert reviewed["reviewed"] is not None and reviewed["review"] == []
        await hq.send_json("DELETE", f"/api/v1/experts/{expert_id}/credentials/{credential['id']}", None,
                           token=coordinator)
        await hq.get_json("/api/v1/experts/999999", status=404, token=coordinator)
        listed = await hq.get_json("/api/v1/experts?department=心内科&tag=arrhythmia", token=coordinator)
        assert [e["name"] for e in listed["experts"]] == ["Dr. Li Wei"] and listed["total"] == 1
        assert (await hq.get_json("/api/v1/experts?review=bogus", status=400, token=coordinator))["parameter"] == \
            "review"
        actions = [(a, t) for who, a, t in audit_actions(db_url) if who == "user:coord"]
        assert actions == [("expert.create", str(expert_id)), ("expert.update", str(expert_id)),
                           ("expert.credential.add", str(expert_id)), ("expert.credential.update", str(expert_id)),
                           ("expert.review", str(expert_id)), ("expert.credential.remove", str(expert_id))]


async def test_who_sees_and_changes_what(broker: Mosquitto, sqlite_url: str) -> None:
    async with running_hq(hq_config(broker, sqlite_url)) as hq:
        coordinator = await token(hq, "coord", "coordinator")
        expert = await token(hq, "dr-li", "expert")
        staff = await token(hq, "nurse", "clinic_staff", clinic_id="clinic-a")
        head = await token(hq, "head", "department_head")
        li = (await hq.send_json("POST", "/api/v1/experts", {"name": "Dr. Li", "department": "Cardiology",
                                                             "username": "dr-li"}, status=201, token=coordinator))["id"]
        neuro = (await hq.send_json("POST", "/api/v1/experts", {"name": "Dr. Neuro", "department": "Neurology"},
                                    status=201, token=coordinator))["id"]
        await hq.send_json("POST", f"/api/v1/experts/{li}/credentials", {"kind": "license", "identifier": "L-9"},
                           status=201, token=coordinator)
        cardiology = await hq.get_json("/api/v1/departments/resolve?name=心内科", token=staff)
        heads = await hq.get_json("/api/v1/users", token=hq.admin_token)
        head_id = next(u["user_id"] for u in heads["users"] if u["username"] == "head")
        await hq.send_json("PUT", f"/api/v1/departments/{cardiology['id']}/heads", {"user_ids": [head_id]},
                           token=coordinator)
        # Clinic staff choose experts by their public profiles: no credentials, review flags or account links.
        public = await hq.get_json(f"/api/v1/experts/{li}", token=staff)
        assert "credentials" not in public and "review" not in public and "username" not in public
        assert {e["name"] for e in (await hq.get_json("/api/v1/experts", token=staff))["experts"]} == {"Dr. Li",
                                                                                                     "Dr. Neuro"}
        await hq.send_json("POST", "/api/v1/experts", {"name": "X", "department": "ENT"}, status=403, token=staff)
        await hq.send_json("PATCH", f"/api/v1/experts/{li}", {"title": "x"}, status=403, token=staff)
        # Department heads: their departments only; another department's expert is as if it did not exist.
        assert [e["name"] for e in (await hq.get_json("/api/v1/experts", token=head))["experts"]] == ["Dr. Li"]
        assert (await hq.get_json(f"/api/v1/experts/{li}", token=head))["credentials"][0]["identifier"] == "L-9"
        await hq.get_json(f"/api/v1/experts/{neuro}", status=404, token=head)
        # Experts: their own full profile, their own scope, languages and tags; not their cap or department.
        assert [e["id"] for e in (await hq.get_json("/api/v1/experts", token=expert))["experts"]] == [li]
        await hq.get_json(f"/api/v1/experts/{neuro}", status=404, token=expert)
        mine = await hq.send_json("PATCH", f"/api/v1/experts/{li}", {"scope_of_practice": "Arrhythmias",
                                                                     "languages": ["zh", "en"]}, token=expert)
        assert mine["changed"] == ["languages", "scope_of_practice"]
        refused = await hq.send_json("PATCH", f"/api/v1/experts/{li}", {"daily_cap": 50}, status=403, token=expert)
        assert "daily_cap" in refused["error"]
        await hq.send_json("PATCH", f"/api/v1/experts/{neuro}", {"title": "x"}, status=403, token=expert)
        await hq.send_json("POST", f"/api/v1/experts/{li}/credentials", {"kind": "x"}, status=403, token=expert)
        assert ("user:dr-li", "expert.update", str(li)) in audit_actions(sqlite_url)


async def test_import_through_the_api_and_the_departments_api(broker: Mosquitto, sqlite_url: str) -> None:
    async with running_hq(hq_config(broker, sqlite_url)) as hq:
        coordinator = await token(hq, "coord", "coordinator")
        headers = {"Authorization": f"Bearer {coordinator}", "Content-Type": "text/csv"}
        bad = "ref,name,department,time_zone,languages\nR1,李医生,心血管病房,Asia/Shanghai,中文\n"
        async with hq.http.post(hq.url + "/api/v1/experts/import", data=bad.encode("gbk"), headers=headers) as r:
            assert r.status == 422
            report = await r.json()
        assert not report["committed"] and "reads as GBK" in report["errors"][0]["expected"]
        async with hq.http.post(hq.url + "/api/v1/experts/import?encoding=gbk", data=bad.encode("gbk"),
                                headers=headers) as r:
            report = await r.json()
        assert r.status == 422 and [(e["row"], e["column"], e["value"]) for e in report["errors"]] == [
            (2, "department", "心血管病房")]
        # A coordinator teaches the taxonomy the hospital's name, and the same file goes in.
        cardiology = await hq.get_json("/api/v1/departments/resolve?name=cardiology", token=coordinator)
        added = await hq.send_json("POST", f"/api/v1/departments/{cardiology['id']}/synonyms", {"name": "心血管病房"},
                                   status=201, token=coordinator)
        assert "心血管病房" in added["synonyms"]
        clash = await hq.send_json("POST", f"/api/v1/departments/{cardiology['id']}/synonyms", {"name": "神经内科"},
                                   status=400, token=coordinator)
        assert "already means Neurology" in clash["error"]
        async with hq.http.post(hq.url + "/api/v1/experts/import?encoding=gbk", data=bad.encode("gbk"),
                                headers=headers) as r:
            assert r.status == 200
            report = await r.json()
        assert report["committed"] and report["created"] == 1 and report["encoding"] == "gbk"
        listed = await hq.get_json("/api/v1/experts?q=李医生", token=coordinator)
        assert listed["experts"][0]["department"]["code"] == "cardiology"
        staff = await token(hq, "nurse", "clinic_staff", clinic_id="clinic-a")
        async with hq.http.post(hq.url + "/api/v1/experts/import", data=bad.encode(),
                                headers={**headers, "Authorization": f"Bearer {staff}"}) as r:
            assert r.status == 403
        assert len((await hq.get_json("/api/v1/departments", token=staff))["departments"]) >= 40
        created = await hq.send_json("POST", "/api/v1/departments", {"code": "sports_medicine", "name": "Sports "
                                     "Medicine", "name_zh": "运动医学科"}, status=201, token=coordinator)
        assert created["synonyms"] == ["Sports Medicine", "运动医学科"]
        actions = [a for _, a, _ in audit_actions(sqlite_url)]
        assert actions.count("expert.import.refused") == 2 and "expert.import" in actions
        assert "department.synonym.add" in actions and "department.create" in actions


async def test_the_pages_render_for_each_role(broker: Mosquitto, sqlite_url: str) -> None:
    async with running_hq(hq_config(broker, sqlite_url)) as hq:
        coordinator = await token(hq, "coord", "coordinator")
        staff = await token(hq, "nurse", "clinic_staff", clinic_id="clinic-a")
        li = (await hq.send_json("POST", "/api/v1/experts", {"name": "Dr. <Li>", "department": "Cardiology"},
                                 status=201, token=coordinator))["id"]

        async def page(path: str, who: str, status: int = 200) -> str:
            async with aiohttp.ClientSession(headers={"Authorization": f"Bearer {who}"}) as s, \
                    s.get(hq.url + path, allow_redirects=False) as r:
                assert r.status == status, (path, await r.text())
                return await r.text()

        listing = await page("/experts", coordinator)
        assert "Dr. &lt;Li&gt;" in listing and "Import from CSV" in listing and "Review" in listing
        assert "Import from CSV" not in await page("/experts", staff)
        profile = await page(f"/experts/{li}", coordinator)
        assert "Credentials" in profile and "no credential on file" in profile
        assert "Credentials" not in await page(f"/experts/{li}", staff)
        assert "encoding" in await page("/experts/import", coordinator)
        await page("/experts/import", staff, 403)
        assert "心血管内科" in await page("/departments", staff)
        assert "Department" in await page(f"/experts/{li}/edit", coordinator)
        await page(f"/experts/{li}/edit", staff, 403)
        assert "unknown review flag" in await page("/experts?review=bogus", coordinator, 400)


def seed_consultations(db_url: str, expert_id: int) -> None:
    engine = db.create_engine_for(db_url)
    try:
        with engine.begin() as conn:
            now = int(time.time() * 1000)
            for clinic in ("clinic-a", "clinic-b"):
                if conn.execute(sa.select(clinics.c.id).where(clinics.c.id == clinic)).first() is None:
                    conn.execute(clinics.insert().values(id=clinic, name=clinic.title()))
            conn.execute(consultations.insert(), [
                {"public_id": f"m{i}", "kind": "emergency", "status": "closed", "clinic_id": clinic,
                 "expert_id": expert_id, "requested_ms": now - 3_600_000, "received_ms": now - 3_600_000,
                 "accepted_ms": now - 3_600_000 + response_s * 1000, "rating": 5}
                for i, (clinic, response_s) in enumerate((("clinic-a", 30), ("clinic-a", 90), ("clinic-b", 60)))])
    finally:
        engine.dispose()


async def test_metrics_api_scoped_by_role_with_an_audited_csv_export(broker: Mosquitto, sqlite_url: str) -> None:
    async with running_hq(hq_config(broker, sqlite_url, '[metrics]\ntime_zone = "Asia/Shanghai"\n')) as hq:
        coordinator = await token(hq, "coord", "coordinator")
        staff = await token(hq, "nurse", "clinic_staff", clinic_id="clinic-a")
        li = (await hq.send_json("POST", "/api/v1/experts", {"name": "Dr. Li", "department": "Cardiology"},
                                 status=201, token=coordinator))["id"]
        await asyncio.to_thread(seed_consultations, sqlite_url, li)
        everything = await hq.get_json("/api/v1/metrics?by=clinic", token=coordinator)
        assert everything["query"]["time_zone"] == "Asia/Shanghai"
        assert {r["key"]: r["volume"] for r in everything["rows"]} == {"clinic-a": 2, "clinic-b": 1}
        assert everything["total"]["response_median_s"] == 60.0 and everything["total"]["response_p90_s"] == 90.0
        mine = await hq.get_json("/api/v1/metrics?by=clinic", token=staff)
        assert [(r["key"], r["response_median_s"]) for r in mine["rows"]] == [("clinic-a", 60.0)]
        assert (await hq.get_json("/api/v1/metrics?by=clinic&clinic_id=clinic-b", token=staff))["rows"] == []
        grid = await hq.get_json("/api/v1/metrics/heatmap?tz=UTC", token=coordinator)
        assert len(grid["counts"]) == 7 and sum(map(sum, grid["counts"])) == 3
        assert (await hq.get_json("/api/v1/metrics?by=colour", status=400, token=coordinator))["parameter"] == "by"
        async with hq.http.get(hq.url + "/api/v1/metrics.csv?by=expert",
                               headers={"Authorization": f"Bearer {coordinator}"}) as r:
            assert r.status == 200 and "attachment" in r.headers["Content-Disposition"]
            text = await r.text()
        assert text.splitlines()[1].startswith(f"{li},Dr. Li,3,3,0,3,60.0,90.0")
        assert ("user:coord", "metrics.export", "expert") in audit_actions(sqlite_url)
        async with aiohttp.ClientSession(headers={"Authorization": f"Bearer {coordinator}"}) as s, \
                s.get(hq.url + "/consultation-metrics?by=hour") as r:
            page = await r.text()
        assert r.status == 200 and "Demand by weekday and hour" in page and 'class="heat heat-9"' in page


async def test_a_console_upload_too_large_for_a_form_is_refused_with_what_to_do(broker: Mosquitto,
                                                                               sqlite_url: str) -> None:
    async with running_hq(hq_config(broker, sqlite_url)) as hq:
        await asyncio.to_thread(accounts.add_user, sqlite_url, "coord", "coordinator")
        async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as browser:
            await browser.post(hq.url + "/login", data={"username": "coord", "password": accounts.PASSWORD,
                                                        "next": "/"}, allow_redirects=False)
            me = await (await browser.get(hq.url + "/api/v1/me")).json()
            header = "ref,name,department,time_zone,languages\n"
            big = header + "".join(f"R{i},Dr. Expert Number {i},心内科,Asia/Shanghai,zh;en\n" for i in range(30_000))
            assert len(big.encode()) > 1024**2
            form = aiohttp.FormData()
            form.add_field("csrf_token", me["csrf_token"])
            form.add_field("encoding", "utf-8")
            form.add_field("file", big.encode(), filename="big.csv", content_type="text/csv")
            # As the console's upload_form.js sends it: the CSRF header (a body this large is not searched for
            # the form field; test_auth has the 403 without it).
            async with browser.post(hq.url + "/experts/import", data=form,
                                    headers={"X-CSRF-Token": me["csrf_token"]}) as r:
                assert r.status == 413
                assert "POST /api/v1/experts/import" in await r.text()
            small = aiohttp.FormData()
            small.add_field("csrf_token", me["csrf_token"])
            small.add_field("file", (header + "R1,Dr. Li,心内科,Asia/Shanghai,zh\n").encode(), filename="s.csv")
            async with browser.post(hq.url + "/experts/import", data=small) as r:
                assert r.status == 200 and "Imported: 1 added" in await r.text()
