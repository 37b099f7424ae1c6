"""What the API and the fleet page say of a gateway's certificate and HQ-managed settings; when the CRL is due."""

from __future__ import annotations

import datetime as dt

from hq import ca, revocation
from hq.representations import config_summary, identity_json

T = 1_767_225_600_000  # 2026-01-01T00:00:00Z


def version(number: int, state: str, reason: str | None = None) -> dict[str, object]:
    return {"version": number, "state": state, "reason": reason, "created_ms": T, "acked_ms": None}


def test_identity_and_settings_of_a_gateway() -> None:
    identity = {"serial": "ab12", "issued_ms": T, "not_after_ms": T + 86_400_000, "revoked_ms": None, "revoked": None}
    config = {"latest": version(3, "rejected", "live_window_s 2 must be at least 5"), "applied": version(2, "applied")}
    shown = identity_json({"config_version": 2}, identity, config)
    assert shown["identity"] == {"serial": "ab12", "last_enrolment": "2026-01-01T00:00:00.000Z",
                                 "certificate_expires": "2026-01-02T00:00:00.000Z", "certificate_revoked": None,
                                 "revoked": None}
    assert shown["config_version"] == 2 and shown["config"]["applied_version"] == 2
    assert shown["config"]["summary"] == "v3 rejected: live_window_s 2 must be at least 5 (running v2)"
    assert identity_json({}, None, None) == {"config_version": 0, "config": None, "identity": None}


def test_settings_summaries() -> None:
    assert config_summary(version(4, "pending"), None, 3) == "v4 pending (running v3)"
    assert config_summary(version(4, "applied"), version(4, "applied"), 4) == "v4 applied"
    assert config_summary(version(4, "applied"), version(4, "applied"), 0) == "v4 applied (reports v0)"


def test_the_crl_is_renewed_when_half_its_validity_is_gone() -> None:
    now = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
    authority = ca.new_authority("CA", now=now, validity_days=3650)
    crl = ca.build_crl(authority, [], last_update=now, next_update=now + dt.timedelta(days=30))
    assert not revocation.crl_due(crl, now=now + dt.timedelta(days=14), crl_days=30)
    assert revocation.crl_due(crl, now=now + dt.timedelta(days=16), crl_days=30)
    assert revocation.crl_due(None, now=now, crl_days=30)
