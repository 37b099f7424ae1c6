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
    assert out["backlog_by_lane"] == {"vitals": {"count": 3, "oldest": "1970-01-01T00:00:00.500Z",
                                                 "oldest_age_s": 0.5, "summary": "vitals: 3 \u00b7 oldest 0 s"}}
    assert out["drain_rate_per_s"] is None and out["drain_eta_s"] is None  # waiting, nothing draining
    draining = gateway_json({**row, "drain_rate_per_s": 1.5})
    assert draining["drain_eta_s"] == 2.0
    assert out["devices"][0]["last_seen"] is None
    assert gateway_json({**row, "last_contact_ms": None})["last_contact"] is None


def test_alarm_details_are_surfaced() -> None:
    row = {"kind": "alarm", "metric": "MDC_PULS_OXIM_SAT_O2", "value": 85.0, "unit": "%", "time_ms": 0,
           "recv_ms": 0, "hq_ms": 0, "patient_id": "P1", "device_id": "m", "clinic_id": "c", "gateway_id": "g",
           "seq": 1, "extra": {"alarm": {"event": "MDC_EVT_LO", "priority": "high"}}}
    assert observation_json(row)["alarm"] == {"event": "MDC_EVT_LO", "priority": "high"}
    assert "extra" not in observation_json(row)
    assert "alarm" not in observation_json({**row, "kind": "observation", "extra": None})


def test_drain_eta_and_backlog_age() -> None:
    from hq.representations import backlog_age_s, drain_eta_s

    assert drain_eta_s(0, None) == 0.0
    assert drain_eta_s(1000, 0.0) is None
    assert drain_eta_s(1000, 250.0) == 4.0
    assert backlog_age_s(None, 5) is None
    assert backlog_age_s(10_000, 70_000) == 60.0
    assert backlog_age_s(80_000, 70_000) == 0.0  # a device clock ahead of the gateway's


def test_backlog_summary_reads_like_a_sentence() -> None:
    from hq.representations import backlog_summary, human_duration

    assert backlog_summary(0, None, None, 0.0) == "nothing waiting"
    assert backlog_summary(12_345, 3 * 3600 + 120, 850.0, 14.5) == (
        "12,345 waiting \u00b7 oldest 3 h 2 min \u00b7 draining 850/s \u00b7 done in ~14 s")
    assert backlog_summary(10, 5, None, None) == "10 waiting \u00b7 oldest 5 s \u00b7 not draining"
    assert human_duration(2 * 86400 + 3 * 3600) == "2 d 3 h"


def test_gateway_metrics_per_gateway_and_lane() -> None:
    from gateway.prometheus import render
    from hq.observability import gateway_families

    row = {"id": "gw1", "clinic_id": "c1", "state": "online", "last_contact_ms": 61_000, "backlog_total": 30,
           "backlog_json": {"alarm": [0, None], "vitals": [30, 1_000]}, "drain_rate_per_s": 10.0,
           "devices_json": [{"device_id": "ox", "protocol": "masimo", "source": "tty", "state": "silent"}]}
    text = render(gateway_families([gateway_json(row)]))
    assert 'hq_gateway_backlog{gateway="gw1",lane="vitals"} 30' in text
    assert 'hq_gateway_backlog_oldest_age_seconds{gateway="gw1",lane="vitals"} 60' in text
    assert 'hq_gateway_drain_eta_seconds{gateway="gw1",clinic="c1"} 3' in text
    assert 'hq_gateway_devices_down{gateway="gw1",clinic="c1"} 1' in text
    assert "hq_gateways_online 1" in text


def test_gap_records_say_what_went_missing() -> None:
    row = {"kind": "gap", "metric": "OUTBOX_QUOTA", "value": 1200.0, "unit": None, "time_ms": 0, "recv_ms": 0,
           "hq_ms": 0, "patient_id": "P1", "device_id": "mon-1", "clinic_id": "c", "gateway_id": "gw-1", "seq": 9,
           "extra": {"reason": "outbox quota", "lane": "backlog", "count": 1200, "from_ms": 0, "to_ms": 3_600_000}}
    gap = observation_json(row)["gap"]
    assert gap["count"] == 1200 and gap["to"] == "1970-01-01T01:00:00.000Z"
    assert gap["text"] == ("1,200 backlog readings from mon-1 were dropped (outbox quota on gateway gw-1), "
                           "1970-01-01T00:00:00.000Z \u2013 1970-01-01T01:00:00.000Z")
