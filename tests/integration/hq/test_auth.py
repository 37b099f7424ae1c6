"""Console accounts against the real HQ app: login with throttling, cookie sessions with CSRF, API tokens,
deactivation that ends sessions at once, role checks and clinic scoping, and the audit trail of it all."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from pathlib import Path

import aiohttp
import sqlalchemy as sa

from hq import db
from hq.models import audit_log
from tests.integration.hq.conftest import FakeGateway, RunningHq, eventually, hq_config, running_hq
from tests.integration.hq.records_support import add_clinics
from tests.support import accounts, dicom_files
from tests.support.mosquitto import Mosquitto

REPO = Path(__file__).resolve().parents[3]


async def browser_session(hq: RunningHq, username: str, password: str = accounts.PASSWORD) -> tuple[
        aiohttp.ClientSession, aiohttp.ClientResponse]:
    session = aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True))  # unsafe: cookies from an IP host
    resp = await session.post(hq.url + "/login", data={"username": username, "password": password, "next": "/"},
                              allow_redirects=False)
    return session, resp


def audit_actions(db_url: str) -> list[tuple[str, str]]:
    engine = db.create_engine_for(db_url)
    try:
        with engine.connect() as conn:
            return [(r.actor, r.action) for r in conn.execute(
                sa.select(audit_log.c.actor, audit_log.c.action).order_by(audit_log.c.id))]
    finally:
        engine.dispose()


async def test_login_sets_a_session_cookie_and_csrf_guards_unsafe_requests(broker: Mosquitto, db_url: str) -> None:
    async with running_hq(hq_config(broker, db_url)) as hq:
        await asyncio.to_thread(accounts.add_user, db_url, "alice", "admin")
        session, resp = await browser_session(hq, "alice")
        async with session:
            assert resp.status == 303 and resp.headers["Location"] == "/"
            cookie = resp.cookies["hq_session"]
            assert cookie["httponly"] and cookie["samesite"] == "Lax"
            me = await (await session.get(hq.url + "/api/v1/me")).json()
            assert me["username"] == "alice" and me["role"] == "admin" and me["csrf_token"]
            body = {"username": "bob", "role": "coordinator", "password": accounts.PASSWORD}
            # A cookie session's unsafe request without the CSRF token is refused, with it accepted.
            refused = await session.post(hq.url + "/api/v1/users", json=body)
            assert refused.status == 403 and "CSRF" in (await refused.json())["error"]
            foreign = await session.post(hq.url + "/api/v1/users", json=body,
                                         headers={"X-CSRF-Token": me["csrf_token"], "Origin": "http://evil.test"})
            assert foreign.status == 403
            created = await session.post(hq.url + "/api/v1/users", json=body,
                                         headers={"X-CSRF-Token": me["csrf_token"]})
            assert created.status == 201, await created.text()
            # Logging out ends the session in the database, not only in this browser.
            token = cookie.value
            await session.post(hq.url + "/logout", data={"csrf_token": me["csrf_token"]}, allow_redirects=False)
        async with aiohttp.ClientSession(cookies={"hq_session": token}) as stolen:
            assert (await stolen.get(hq.url + "/api/v1/me")).status == 401
        actions = audit_actions(db_url)
        assert ("user:alice", "login") in actions and ("user:alice", "user.create") in actions
        assert ("user:alice", "logout") in actions


async def test_secure_cookie_by_default(broker: Mosquitto, sqlite_url: str) -> None:
    async with running_hq(hq_config(broker, sqlite_url, "[auth]\nsecure_cookies = true\n")) as hq:
        await asyncio.to_thread(accounts.add_user, sqlite_url, "alice", "coordinator")
        session, resp = await browser_session(hq, "alice")
        async with session:
            assert resp.cookies["hq_session"]["secure"]


async def test_failed_logins_are_throttled_per_user_and_audited(broker: Mosquitto, sqlite_url: str) -> None:
    config = hq_config(broker, sqlite_url, "[auth]\nsecure_cookies = false\nlogin_attempts = 3\n")
    async with running_hq(config) as hq:
        await asyncio.to_thread(accounts.add_user, sqlite_url, "carol", "coordinator")
        for _ in range(3):
            session, resp = await browser_session(hq, "carol", "wrong-password-123")
            await session.close()
            assert resp.status == 401
            assert "Wrong user name or password" in await resp.text()
        # Now even the right password is refused until the window passes: guessing gets nowhere.
        session, resp = await browser_session(hq, "carol")
        await session.close()
        assert resp.status == 429 and int(resp.headers["Retry-After"]) > 0
        # Another user is not locked out by carol's attacker.
        await asyncio.to_thread(accounts.add_user, sqlite_url, "dave", "coordinator")
        session, resp = await browser_session(hq, "dave")
        await session.close()
        assert resp.status == 303
        actions = [a for _, a in audit_actions(sqlite_url)]
        assert actions.count("login.failed") == 3 and "login.throttled" in actions


async def test_deactivating_an_account_ends_its_sessions_tokens_and_sockets_at_once(
        broker: Mosquitto, sqlite_url: str) -> None:
    async with running_hq(hq_config(broker, sqlite_url)) as hq:
        erin_token = await asyncio.to_thread(accounts.user_with_token, sqlite_url, "erin", "coordinator")
        session, _resp = await browser_session(hq, "erin")
        async with session:
            ws = await session.ws_connect(hq.url + "/ws")
            await ws.send_json({"subscribe": {}})
            assert (await ws.receive_json(timeout=5))["type"] == "subscribed"
            users = (await hq.get_json("/api/v1/users"))["users"]
            erin = next(u for u in users if u["username"] == "erin")
            done = await hq.send_json("POST", f"/api/v1/users/{erin['user_id']}/deactivate", {})
            assert done["sessions_ended"] == 1
            assert (await session.get(hq.url + "/api/v1/me")).status == 401
            assert (await hq.get_json("/api/v1/me", status=401, token=erin_token)) is not None
            msg = await ws.receive(timeout=5)
            assert msg.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED, aiohttp.WSMsgType.CLOSING)
        session, resp = await browser_session(hq, "erin")
        await session.close()
        assert resp.status == 401  # cannot log in again


async def test_roles_and_clinic_scoping_through_the_api(broker: Mosquitto, db_url: str) -> None:
    async with running_hq(hq_config(broker, db_url)) as hq, \
            FakeGateway(broker, "gw-a", clinic_id="clinic-a") as gw_a, \
            FakeGateway(broker, "gw-b", clinic_id="clinic-b") as gw_b:
        await gw_a.send(gw_a.batch([1], patient_id="PA"))
        await gw_b.send(gw_b.batch([1], patient_id="PB"))

        async def both_stored() -> bool:
            return len((await hq.get_json("/api/v1/observations"))["observations"]) == 2

        await eventually(both_stored, what="both clinics' readings")
        staff_a = await asyncio.to_thread(accounts.user_with_token, db_url, "staff-a", "clinic_staff",
                                          clinic_id="clinic-a")
        expert = await asyncio.to_thread(accounts.user_with_token, db_url, "expert-1", "expert")
        coordinator = await asyncio.to_thread(accounts.user_with_token, db_url, "coord", "coordinator")
        # Clinic staff see their clinic only, and asking for another clinic is refused, not silently emptied.
        seen = (await hq.get_json("/api/v1/observations", token=staff_a))["observations"]
        assert {o["patient_id"] for o in seen} == {"PA"}
        assert [g["gateway_id"] for g in (await hq.get_json("/api/v1/gateways", token=staff_a))["gateways"]] == ["gw-a"]
        await hq.get_json("/api/v1/observations?clinic_id=clinic-b", status=403, token=staff_a)
        await hq.get_json("/api/v1/gateways?clinic_id=clinic-b", status=403, token=staff_a)
        assert (await hq.get_json("/api/v1/patients/PB/vitals", token=staff_a))["vitals"] == []
        # Experts reach patients through their consultations only: not the fleet-wide endpoints.
        for path in ("/api/v1/observations", "/api/v1/gateways", "/api/v1/patients/PA/vitals"):
            await hq.get_json(path, status=403, token=expert)
        # Administration is for admins.
        for path in ("/api/v1/users", "/api/v1/audit"):
            await hq.get_json(path, status=403, token=coordinator)
            await hq.get_json(path, status=403, token=staff_a)
        await hq.get_json("/api/v1/users", status=401, token="hqt_not-a-token")
        # Reading a patient's data is audited, with who and which clinic.
        entries = (await hq.get_json("/api/v1/audit?action=patient.vitals.read"))["entries"]
        assert any(e["actor"] == "user:staff-a" and e["target_id"] == "PB" and e["clinic_id"] == "clinic-a"
                   for e in entries)


def run_hq_cli(config: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "hq", *args, "--config", str(config)], cwd=REPO,
                          capture_output=True, text=True, timeout=60)


def test_cli_creates_users_and_tokens_and_verify_names_a_tampered_entry(tmp_path: Path) -> None:
    db_path = tmp_path / "hq.db"
    config = tmp_path / "hq.toml"
    config.write_text(f'[database]\nurl = "sqlite:///{db_path}"\n')
    password = tmp_path / "pw"
    password.write_text(accounts.PASSWORD + "\n")
    made = run_hq_cli(config, "user", "add", "--username", "root-admin", "--role", "admin",
                      "--password-file", str(password))
    assert made.returncode == 0, made.stderr
    bad = run_hq_cli(config, "user", "add", "--username", "nurse-x", "--role", "clinic_staff")
    assert bad.returncode == 1 and "clinic_id" in bad.stderr and "Traceback" not in bad.stderr
    token = run_hq_cli(config, "token", "create", "--username", "root-admin", "--name", "ops")
    assert token.returncode == 0 and token.stdout.startswith("hqt_")
    verified = run_hq_cli(config, "audit", "verify")
    assert verified.returncode == 0 and "intact: 2 entries" in verified.stdout
    # Someone with the database file drops the append-only trigger and edits an entry.
    import sqlite3

    conn = sqlite3.connect(db_path)
    conn.execute("DROP TRIGGER audit_log_no_update")
    conn.execute("UPDATE audit_log SET actor = 'user:nobody' WHERE id = 1")
    conn.commit()
    conn.close()
    broken = run_hq_cli(config, "audit", "verify")
    assert broken.returncode == 1 and "broken at entry 1" in broken.stdout and "edited" in broken.stdout


async def test_a_large_upload_is_checked_by_the_csrf_header_without_reading_its_body(
        broker: Mosquitto, sqlite_url: str, tmp_path: Path) -> None:
    records = f'[records]\nattachments_dir = "{tmp_path / "attachments"}"\nmax_upload_bytes = {64 * 1024**2}\n'
    async with running_hq(hq_config(broker, sqlite_url, records)) as hq:
        await asyncio.to_thread(accounts.add_user, sqlite_url, "alice", "admin")
        await asyncio.to_thread(add_clinics, sqlite_url, "clinic-a")
        patient = (await hq.send_json("POST", "/api/v1/patients", {"clinic_id": "clinic-a", "mrn": "A-1",
                                                                   "name": "Imaged"}, status=201))["patient"]
        url = f"{hq.url}/api/v1/patients/{patient['patient_id']}/imaging"
        big = dicom_files.ct_slice(pixels=1664)  # 5.3 MiB
        assert len(big) > 5 * 1024**2

        def form(csrf_field: str | None = None) -> aiohttp.FormData:
            data = aiohttp.FormData()
            if csrf_field is not None:
                data.add_field("csrf_token", csrf_field)
            data.add_field("file", big, filename="big.dcm", content_type="application/dicom")
            return data

        session, _ = await browser_session(hq, "alice")
        async with session:
            me = await (await session.get(hq.url + "/api/v1/me")).json()
            refused = await session.post(url, data=form())
            assert refused.status == 403 and "X-CSRF-Token" in (await refused.json())["error"]
            in_field = await session.post(url, data=form(me["csrf_token"]))  # the field of a large body is not read
            assert in_field.status == 403 and "larger than 1 MiB" in (await in_field.json())["error"]
            filed = await session.post(url, data=form(), headers={"X-CSRF-Token": me["csrf_token"]})
            assert filed.status == 201, await filed.text()
            assert (await filed.json())["size_bytes"] == len(big)
            # A small form still proves itself with its field: the console's CSV import without script.
            csv = aiohttp.FormData()
            csv.add_field("csrf_token", me["csrf_token"])
            rows = b"ref,name,department,time_zone,languages\nR-1,Dr. Small,Cardiology,Asia/Shanghai,zh\n"
            csv.add_field("file", rows, filename="x.csv", content_type="text/csv")
            small = await session.post(hq.url + "/experts/import", data=csv)
            assert small.status == 200, await small.text()
            cookie = session.cookie_jar.filter_cookies(hq.url)["hq_session"].value

        # The refusal comes before the body: HQ answers while most of the 5 MiB has not even been sent.
        boundary = "csrf-test-boundary"
        head = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"csrf_token\"\r\n\r\n{me['csrf_token']}\r\n"
                f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"big.dcm\"\r\n"
                "Content-Type: application/dicom\r\n\r\n").encode()
        tail = f"\r\n--{boundary}--\r\n".encode()
        host, port = hq.url.removeprefix("http://").split(":")
        reader, writer = await asyncio.open_connection(host, int(port))
        try:
            writer.write((f"POST /api/v1/patients/{patient['patient_id']}/imaging HTTP/1.1\r\nHost: {host}:{port}\r\n"
                          f"Cookie: hq_session={cookie}\r\n"
                          f"Content-Type: multipart/form-data; boundary={boundary}\r\n"
                          f"Content-Length: {len(head) + len(big) + len(tail)}\r\n\r\n").encode() + head + big[:65536])
            await writer.drain()
            status_line = await asyncio.wait_for(reader.readline(), 10)
        finally:
            writer.close()
        assert status_line.startswith(b"HTTP/1.1 403"), status_line
