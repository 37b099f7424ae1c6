"""The fleet administration API over HTTP: tokens, enrolment and its refusals, revocation and the CRL."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from hq import ca
from tests.integration.hq.conftest import RunningHq, hq_config, running_hq
from tests.support.mosquitto import Mosquitto


def csr_for(cn: str) -> str:
    return ca.build_csr(ca.generate_key(), cn).public_bytes(serialization.Encoding.PEM).decode()


async def post(hq: RunningHq, path: str, body: dict[str, Any] | None, status: int) -> Any:
    async with hq.http.post(hq.url + path, json=body) as resp:
        assert resp.status == status, await resp.text()
        return await resp.json()


async def test_enrolment_over_http_and_every_refusal(broker: Mosquitto, sqlite_url: str, tmp_path: Path) -> None:
    config = hq_config(broker, sqlite_url, f'[ca]\ndir = "{tmp_path / "ca"}"\n')
    async with running_hq(config) as hq:
        issued = await post(hq, "/api/v1/enrolment-tokens", {"gateway_id": "gw-7", "clinic_id": "clinic-a"}, 201)
        assert issued["gateway_id"] == "gw-7" and issued["token"] and issued["expires"]
        done = await post(hq, "/api/v1/enrolment", {"token": issued["token"], "csr": csr_for("gw-7")}, 200)
        cert = x509.load_pem_x509_certificate(done["certificate_chain"].encode())
        authority = x509.load_pem_x509_certificate(done["ca_bundle"].encode())
        assert ca.issued_by(cert, authority) and ca.common_name(cert.subject) == "gw-7"
        assert done["serial"] == ca.serial_hex(cert.serial_number)
        # Every refusal is a 4xx naming the field at fault and the reason.
        again = await post(hq, "/api/v1/enrolment", {"token": issued["token"], "csr": csr_for("gw-7")}, 409)
        assert (again["field"], again["reason"]) == ("token", "used")
        unknown = await post(hq, "/api/v1/enrolment", {"token": "cgw1_nothing", "csr": csr_for("gw-7")}, 403)
        assert (unknown["field"], unknown["reason"]) == ("token", "unknown")
        other = await post(hq, "/api/v1/enrolment-tokens", {"gateway_id": "gw-8", "clinic_id": "clinic-a",
                                                            "ttl_h": 1}, 201)
        wrong = await post(hq, "/api/v1/enrolment", {"token": other["token"], "csr": csr_for("gw-7")}, 400)
        assert (wrong["field"], wrong["reason"]) == ("csr", "cn_mismatch") and "gw-8" in wrong["error"]
        bad = await post(hq, "/api/v1/enrolment", {"token": other["token"], "csr": "junk"}, 400)
        assert (bad["field"], bad["reason"]) == ("csr", "bad_csr")
        missing = await post(hq, "/api/v1/enrolment", {"token": other["token"]}, 400)
        assert (missing["field"], missing["reason"]) == ("csr", "missing")
        for body, field in (({"gateway_id": "hq-2", "clinic_id": "c"}, "gateway_id"),
                            ({"gateway_id": "gw-9"}, "clinic_id"),
                            ({"gateway_id": "gw-9", "clinic_id": "c", "ttl_h": 100000}, "ttl_h")):
            assert (await post(hq, "/api/v1/enrolment-tokens", body, 400))["field"] == field


async def test_revocation_lists_the_certificate_and_closes_enrolment(broker: Mosquitto, sqlite_url: str,
                                                                     tmp_path: Path) -> None:
    config = hq_config(broker, sqlite_url, f'[ca]\ndir = "{tmp_path / "ca"}"\n')
    async with running_hq(config) as hq:
        issued = await post(hq, "/api/v1/enrolment-tokens", {"gateway_id": "gw-7", "clinic_id": "clinic-a"}, 201)
        done = await post(hq, "/api/v1/enrolment", {"token": issued["token"], "csr": csr_for("gw-7")}, 200)
        spare = await post(hq, "/api/v1/enrolment-tokens", {"gateway_id": "gw-7", "clinic_id": "clinic-a"}, 201)
        revoked = await post(hq, "/api/v1/gateways/gw-7/revoke", {"reason": "stolen from the clinic"}, 200)
        assert revoked["certificates_revoked"] == [done["serial"]] and not revoked["already_revoked"]
        assert revoked["broker"]["state"] == "not_configured" and revoked["crl"] == {"written": True}
        async with hq.http.get(hq.url + "/api/v1/ca/crl.pem") as resp:
            assert resp.status == 200
            crl = x509.load_pem_x509_crl(await resp.read())
        assert crl.get_revoked_certificate_by_serial_number(int(done["serial"], 16)) is not None
        assert (tmp_path / "ca" / "crl.pem").read_bytes() == crl.public_bytes(serialization.Encoding.PEM)
        refused = await post(hq, "/api/v1/enrolment", {"token": spare["token"], "csr": csr_for("gw-7")}, 403)
        assert refused["reason"] == "revoked"
        assert (await post(hq, "/api/v1/gateways/gw-7/revoke", None, 200))["already_revoked"]
        assert (await post(hq, "/api/v1/gateways/gw-nobody/revoke", None, 404))["field"] == "gateway_id"


async def test_only_coordinators_make_tokens_and_revoke_and_every_step_is_audited(
        broker: Mosquitto, sqlite_url: str, tmp_path: Path) -> None:
    import asyncio

    import sqlalchemy as sa

    from hq import db
    from hq.models import audit_log
    from tests.support import accounts

    config = hq_config(broker, sqlite_url, f'[ca]\ndir = "{tmp_path / "ca"}"\n')
    async with running_hq(config) as hq:
        staff = await asyncio.to_thread(accounts.user_with_token, sqlite_url, "head", "department_head")
        coordinator = await asyncio.to_thread(accounts.user_with_token, sqlite_url, "coord", "coordinator")
        body = {"gateway_id": "gw-7", "clinic_id": "clinic-a"}
        await hq.send_json("POST", "/api/v1/enrolment-tokens", body, 403, token=staff)
        async with hq.http.post(hq.url + "/api/v1/enrolment-tokens", json=body,
                                headers={"Authorization": "Bearer nonsense"}) as resp:
            assert resp.status == 401
        issued = await hq.send_json("POST", "/api/v1/enrolment-tokens", body, 201, token=coordinator)
        await post(hq, "/api/v1/enrolment", {"token": issued["token"], "csr": csr_for("gw-7")}, 200)
        await hq.send_json("POST", "/api/v1/gateways/gw-7/revoke", {}, 403, token=staff)
        await hq.send_json("POST", "/api/v1/gateways/gw-7/revoke", {"reason": "lost"}, 200, token=coordinator)
    engine = db.create_engine_for(sqlite_url)
    try:
        with engine.connect() as conn:
            entries = conn.execute(sa.select(audit_log.c.actor, audit_log.c.action, audit_log.c.target_id)
                                   .where(audit_log.c.target_type == "gateway").order_by(audit_log.c.id)).all()
    finally:
        engine.dispose()
    assert [tuple(e) for e in entries] == [("user:coord", "enrolment_token.created", "gw-7"),
                                           ("gateway:gw-7", "gateway.enrolled", "gw-7"),
                                           ("user:coord", "gateway.revoked", "gw-7")]
    assert issued["token"] not in str(entries)
