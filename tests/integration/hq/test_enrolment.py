"""Enrolment tokens against real SQLite and PostgreSQL: single use (also when redeemed at the same moment),
expiry, binding to one gateway id, revocation, renewal."""

from __future__ import annotations

import datetime as dt
import threading
from collections.abc import Iterator

import pytest
import sqlalchemy as sa
from cryptography.hazmat.primitives import serialization

from hq import ca, db, enrolment, revocation
from hq.models import gateway_certificates

NOW = dt.datetime.now(dt.UTC)
NOW_MS = int(NOW.timestamp() * 1000)
HOUR_MS = 3600_000


@pytest.fixture(scope="module")
def authority() -> ca.Authority:
    return ca.new_authority("Test fleet CA", now=NOW, validity_days=3650)


@pytest.fixture
def engine(db_url: str) -> Iterator[sa.Engine]:
    engine = db.create_engine_for(db_url)
    db.upgrade_schema(engine)
    yield engine
    engine.dispose()


def token_for(engine: sa.Engine, gateway_id: str = "gw-1", clinic_id: str = "clinic-a", *,
              ttl_ms: int = HOUR_MS, now_ms: int = NOW_MS) -> enrolment.IssuedToken:
    with engine.begin() as conn:
        return enrolment.create_token(conn, gateway_id, clinic_id, actor="user:coord", now_ms=now_ms, ttl_ms=ttl_ms)


def request_for(cn: str) -> str:
    return ca.build_csr(ca.generate_key(), cn).public_bytes(serialization.Encoding.PEM).decode()


def refusal(engine: sa.Engine, authority: ca.Authority, token: str, csr: str) -> enrolment.EnrolmentError:
    with pytest.raises(enrolment.EnrolmentError) as caught:
        enrolment.redeem(engine, token, csr, authority, now=NOW, validity_days=365)
    return caught.value


def test_a_token_enrols_its_gateway_once(engine: sa.Engine, authority: ca.Authority) -> None:
    issued = token_for(engine)
    assert issued.token.startswith(enrolment.TOKEN_PREFIX) and len(issued.token) > 40
    done = enrolment.redeem(engine, issued.token, request_for("gw-1"), authority, now=NOW, validity_days=365)
    assert (done.gateway_id, done.clinic_id) == ("gw-1", "clinic-a")
    assert ca.issued_by(done.certificate, authority.certificate)
    with engine.connect() as conn:
        row = conn.execute(sa.select(gateway_certificates)).one()
    assert row.serial == done.serial and row.token_id == issued.token_id and row.revoked_ms is None
    again = refusal(engine, authority, issued.token, request_for("gw-1"))
    assert (again.field, again.reason) == ("token", "used")


def test_the_token_itself_is_never_stored(engine: sa.Engine) -> None:
    issued = token_for(engine)
    with engine.connect() as conn:
        dump = " ".join(str(v) for row in conn.execute(sa.text("SELECT * FROM enrolment_tokens")) for v in row)
    assert issued.token not in dump and enrolment.hash_token(issued.token) in dump


def test_expired_unknown_and_foreign_tokens_are_refused(engine: sa.Engine, authority: ca.Authority) -> None:
    old = token_for(engine, ttl_ms=HOUR_MS, now_ms=NOW_MS - 2 * HOUR_MS)
    assert refusal(engine, authority, old.token, request_for("gw-1")).reason == "expired"
    assert refusal(engine, authority, enrolment.new_token(), request_for("gw-1")).reason == "unknown"
    issued = token_for(engine, "gw-2")
    wrong = refusal(engine, authority, issued.token, request_for("gw-1"))
    assert (wrong.field, wrong.reason) == ("csr", "cn_mismatch")
    bad = refusal(engine, authority, issued.token, "not a request")
    assert (bad.field, bad.reason) == ("csr", "bad_csr")
    # Neither a wrong CN nor a bad request spends the token: the gateway can fix its request and try again.
    enrolment.redeem(engine, issued.token, request_for("gw-2"), authority, now=NOW, validity_days=365)


@pytest.mark.parametrize("gateway_id", ["hq-1", "gw/1", ""])
def test_tokens_are_not_made_for_ids_a_gateway_cannot_have(engine: sa.Engine, gateway_id: str) -> None:
    with pytest.raises(enrolment.EnrolmentError) as caught:
        token_for(engine, gateway_id)
    assert caught.value.field == "gateway_id"


def test_a_gateway_stays_in_its_clinic(engine: sa.Engine, authority: ca.Authority) -> None:
    issued = token_for(engine, "gw-1", "clinic-a")
    enrolment.redeem(engine, issued.token, request_for("gw-1"), authority, now=NOW, validity_days=365)
    with pytest.raises(enrolment.EnrolmentError) as caught:
        token_for(engine, "gw-1", "clinic-b")
    assert (caught.value.field, caught.value.reason) == ("clinic_id", "clinic_mismatch")


def test_renewal_supersedes_the_old_certificate(engine: sa.Engine, authority: ca.Authority) -> None:
    first = enrolment.redeem(engine, token_for(engine).token, request_for("gw-1"), authority, now=NOW,
                             validity_days=365)
    second = enrolment.redeem(engine, token_for(engine).token, request_for("gw-1"), authority, now=NOW,
                              validity_days=365)
    assert second.superseded == [first.serial]
    with engine.connect() as conn:
        c = gateway_certificates.c
        states = {serial: reason for serial, reason in conn.execute(sa.select(c.serial, c.revoke_reason))}
    assert states == {first.serial: "superseded", second.serial: None}
    assert [s for s, _ in revocation.revoked_certificates(engine, NOW)] == [int(first.serial, 16)]


def test_a_revoked_gateway_cannot_enrol_again(engine: sa.Engine, authority: ca.Authority) -> None:
    done = enrolment.redeem(engine, token_for(engine).token, request_for("gw-1"), authority, now=NOW,
                            validity_days=365)
    spare = token_for(engine)
    with engine.begin() as conn:
        result = revocation.revoke(conn, "gw-1", actor="user:coord", reason="stolen", now_ms=NOW_MS)
    assert result.certificates == [done.serial] and not result.already
    with engine.begin() as conn:
        assert revocation.revoke(conn, "gw-1", actor="user:coord", reason=None, now_ms=NOW_MS).already
    assert refusal(engine, authority, spare.token, request_for("gw-1")).reason == "revoked"
    with pytest.raises(enrolment.EnrolmentError, match="new gateway id"):
        token_for(engine)
    assert revocation.pending_broker(engine) == ["gw-1"]
    revocation.mark_broker_applied(engine, ["gw-1"], NOW_MS)
    assert revocation.pending_broker(engine) == [] and revocation.all_revoked(engine) == ["gw-1"]


def test_simultaneous_redemptions_of_one_token_enrol_once(engine: sa.Engine, authority: ca.Authority) -> None:
    issued = token_for(engine)
    requests = [request_for("gw-1") for _ in range(8)]
    barrier = threading.Barrier(len(requests))
    outcomes: list[str] = []

    def redeem(csr: str) -> None:
        barrier.wait()
        try:
            enrolment.redeem(engine, issued.token, csr, authority, now=NOW, validity_days=365)
            outcomes.append("enrolled")
        except enrolment.EnrolmentError as exc:
            outcomes.append(exc.reason)

    threads = [threading.Thread(target=redeem, args=(csr,)) for csr in requests]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(outcomes) == ["enrolled"] + ["used"] * 7
    with engine.connect() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(gateway_certificates)).scalar() == 1
