"""The JSON shapes HQ shows the world (API, WebSocket, console) for gateway and observation rows.

Pure mapping from database rows (or rows about to be written) to JSON-ready dicts; no queries here.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from hq.clock import iso_from_ms


def gateway_json(row: Mapping[str, Any]) -> dict[str, Any]:
    backlog = row.get("backlog_json") or {}
    return {
        "gateway_id": row["id"],
        "clinic_id": row["clinic_id"],
        "status": row["state"],
        "last_contact": iso_from_ms(row.get("last_contact_ms")),
        "first_seen": iso_from_ms(row.get("first_seen_ms")),
        "backlog": int(row.get("backlog_total") or 0),
        "backlog_by_lane": {
            lane: {"count": int(pair[0] or 0), "oldest": iso_from_ms(pair[1])} for lane, pair in backlog.items()
        },
        "devices": [
            {"device_id": d.get("device_id"), "protocol": d.get("protocol"), "source": d.get("source"),
             "state": d.get("state"), "last_seen": iso_from_ms(d.get("last_ms"))}
            for d in (row.get("devices_json") or [])
        ],
        "software": row.get("software") or "",
        "started": iso_from_ms(row.get("started_ms")),
        "committed_seq": int(row.get("committed_seq") or 0),
    }


def observation_json(row: Mapping[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {
        "kind": row["kind"],
        "metric": row["metric"],
        "value": row["value"],
        "unit": row["unit"],
        "time": iso_from_ms(row["time_ms"]),
        "patient_id": row["patient_id"],
        "device_id": row["device_id"],
        "clinic_id": row["clinic_id"],
        "gateway_id": row["gateway_id"],
        "seq": row["seq"],
        "received": iso_from_ms(row["recv_ms"]),
        "ingested": iso_from_ms(row["hq_ms"]),
    }
    extra = row.get("extra")
    if extra is not None:
        if row["kind"] == "alarm" and isinstance(extra.get("alarm"), dict):
            out["alarm"] = extra["alarm"]
        else:
            out["extra"] = extra
    return out


def clinic_json(row: Mapping[str, Any]) -> dict[str, Any]:
    return {"clinic_id": row["id"], "name": row["name"], "gateways": int(row.get("gateways") or 0),
            "gateways_online": int(row.get("gateways_online") or 0)}
