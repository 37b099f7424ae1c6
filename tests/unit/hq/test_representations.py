"""JSON shapes of gateway and observation rows."""

from __future__ import annotations

from hq.representations import gateway_json, observation_json


def test_gateway_json() -> None:
    row = {"id": "gw1", "clinic_id": "c1", "state": "online", "first_seen_ms": 0, "last_contact_ms": 1_000,
           "software": "1.0", "started_ms": None, "backlog_total": 3, "backlog_json": {"vitals": [3, 500]},
           "devices_json": [{"device_id": "ox", "protocol": "masimo", "source": "tty", "state": "ok",
                             "last_ms": None}], "committed_seq": 7}
    out = gateway_json(row)
    assert out["status"] == "online" and out["last_contact"] == "1970-01-01T00:00:01.000Z"
    assert out["backlog_by_lane"] == {"vitals": {"count": 3, "oldest": "1970-01-01T00:00:00.500Z"}}
    assert out["devices"][0]["last_seen"] is None
    assert gateway_json({**row, "last_contact_ms": None})["last_contact"] is None


def test_alarm_details_are_surfaced() -> None:
    row = {"kind": "alarm", "metric": "MDC_PULS_OXIM_SAT_O2", "value": 85.0, "unit": "%", "time_ms": 0,
           "recv_ms": 0, "hq_ms": 0, "patient_id": "P1", "device_id": "m", "clinic_id": "c", "gateway_id": "g",
           "seq": 1, "extra": {"alarm": {"event": "MDC_EVT_LO", "priority": "high"}}}
    assert observation_json(row)["alarm"] == {"event": "MDC_EVT_LO", "priority": "high"}
    assert "extra" not in observation_json(row)
    assert "alarm" not in observation_json({**row, "kind": "observation", "extra": None})
