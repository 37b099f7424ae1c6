"""The JSON shapes HQ shows the world (API, WebSocket, console) for gateway and observation rows.

Pure mapping from database rows (or rows about to be written) to JSON-ready dicts; no queries here.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from hq.clock import iso_from_ms


def backlog_age_s(oldest_ms: int | None, reported_ms: int | None) -> float | None:
    """How old the oldest waiting entry was when the gateway last reported."""
    if oldest_ms is None or reported_ms is None:
        return None
    return max(0.0, (reported_ms - oldest_ms) / 1000)


def drain_eta_s(backlog: int, drain_rate_per_s: float | None) -> float | None:
    """Seconds to drain the backlog at the recent rate; None when nothing drains (or nothing waits: 0)."""
    if backlog <= 0:
        return 0.0
    if not drain_rate_per_s:
        return None
    return backlog / drain_rate_per_s


def human_duration(seconds: float) -> str:
    s = round(seconds)
    if s < 60:
        return f"{s} s"
    if s < 3600:
        return f"{s // 60} min"
    if s < 86400:
        return f"{s // 3600} h {s % 3600 // 60} min"
    return f"{s // 86400} d {s % 86400 // 3600} h"


def backlog_summary(total: int, oldest_age_s: float | None, rate: float | None, eta_s: float | None) -> str:
    """One line for the console: how much waits, how old, how fast it drains, when it will be done."""
    if total <= 0:
        return "nothing waiting"
    parts = [f"{total:,} waiting"]
    if oldest_age_s is not None:
        parts.append(f"oldest {human_duration(oldest_age_s)}")
    if rate:
        parts.append(f"draining {rate:,.0f}/s")
    parts.append(f"done in ~{human_duration(eta_s)}" if eta_s is not None else "not draining")
    return " \u00b7 ".join(parts)


def lane_summary(lane: str, count: int, oldest_age_s: float | None) -> str:
    """One lane of a gateway's backlog for people: "vitals: 1,234 · oldest 2 min"."""
    age = f" \u00b7 oldest {human_duration(oldest_age_s)}" if oldest_age_s is not None else ""
    return f"{lane}: {count:,}{age}"


def gateway_json(row: Mapping[str, Any]) -> dict[str, Any]:
    backlog = row.get("backlog_json") or {}
    reported = row.get("last_contact_ms")
    total = int(row.get("backlog_total") or 0)
    rate = row.get("drain_rate_per_s")
    return {
        "gateway_id": row["id"],
        "clinic_id": row["clinic_id"],
        "status": row["state"],
        "last_contact": iso_from_ms(row.get("last_contact_ms")),
        "first_seen": iso_from_ms(row.get("first_seen_ms")),
        "backlog": total,
        "backlog_by_lane": {
            lane: {"count": int(pair[0] or 0), "oldest": iso_from_ms(pair[1]),
                   "oldest_age_s": backlog_age_s(pair[1], reported),
                   "summary": lane_summary(lane, int(pair[0] or 0), backlog_age_s(pair[1], reported))}
            for lane, pair in backlog.items()
        },
        "drain_rate_per_s": rate,
        "drain_eta_s": drain_eta_s(total, rate),
        "backlog_summary": backlog_summary(
            total,
            max((a for pair in backlog.values() if (a := backlog_age_s(pair[1], reported)) is not None),
                default=None),
            rate, drain_eta_s(total, rate)),
        "devices": [
            {"device_id": d.get("device_id"), "protocol": d.get("protocol"), "source": d.get("source"),
             "state": d.get("state"), "last_seen": iso_from_ms(d.get("last_ms"))}
            for d in (row.get("devices_json") or [])
        ],
        "software": row.get("software") or "",
        "started": iso_from_ms(row.get("started_ms")),
        "committed_seq": int(row.get("committed_seq") or 0),
        "complete_below": int(row.get("complete_below") or 0),
    }


def identity_json(gateway_row: Mapping[str, Any], identity: Mapping[str, Any] | None,
                  config: Mapping[str, Any] | None) -> dict[str, Any]:
    """A gateway's certificate and HQ-managed settings, to add to `gateway_json` (API and fleet page).

    `identity`: from `hq.enrolment.identities`; `config`: from `hq.gateway_settings.states`."""
    revoked = (identity or {}).get("revoked")
    latest = (config or {}).get("latest")
    applied = (config or {}).get("applied")
    return {
        "config_version": int(gateway_row.get("config_version") or 0),
        "config": None if latest is None else {
            "version": latest["version"], "state": latest["state"], "reason": latest["reason"],
            "changed": iso_from_ms(latest["created_ms"]), "answered": iso_from_ms(latest["acked_ms"]),
            "applied_version": applied["version"] if applied else None,
            "summary": config_summary(latest, applied, int(gateway_row.get("config_version") or 0)),
        },
        "identity": None if identity is None else {
            "serial": identity.get("serial"),
            "last_enrolment": iso_from_ms(identity.get("issued_ms")),
            "certificate_expires": iso_from_ms(identity.get("not_after_ms")),
            "certificate_revoked": iso_from_ms(identity.get("revoked_ms")),
            "revoked": None if revoked is None else iso_from_ms(revoked["revoked_ms"]),
        },
    }


def config_summary(latest: Mapping[str, Any], applied: Mapping[str, Any] | None, running: int) -> str:
    """One line for the console: where the gateway's HQ-managed settings stand."""
    if latest["state"] == "pending":
        return f"v{latest['version']} pending (running v{running})"
    if latest["state"] == "rejected":
        return f"v{latest['version']} rejected: {latest['reason'] or 'no reason given'} (running v{running})"
    if latest["state"] == "applied":
        return f"v{latest['version']} applied" + ("" if running == latest["version"] else f" (reports v{running})")
    return f"v{latest['version']} {latest['state']} (running v{running})"


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
        if row["kind"] == "gap":
            out["gap"] = gap_summary(row, extra)
    return out


def gap_summary(row: Mapping[str, Any], extra: Mapping[str, Any]) -> dict[str, Any]:
    """What a gap record says, for people: how many readings of which device went missing, when, why."""
    count = int(extra.get("count") or row.get("value") or 0)
    first = iso_from_ms(extra.get("from_ms") if isinstance(extra.get("from_ms"), int) else row["time_ms"])
    last = iso_from_ms(extra.get("to_ms")) if isinstance(extra.get("to_ms"), int) else first
    reason = str(extra.get("reason") or "unknown reason")
    lane = str(extra.get("lane") or "")
    text = (f"{count:,} {lane + ' ' if lane else ''}readings from {row['device_id']} were dropped "
            f"({reason} on gateway {row['gateway_id']}), {first} \u2013 {last}")
    return {"count": count, "from": first, "to": last, "reason": reason, "lane": lane, "text": text}


def clinic_json(row: Mapping[str, Any]) -> dict[str, Any]:
    return {"clinic_id": row["id"], "name": row["name"], "gateways": int(row.get("gateways") or 0),
            "gateways_online": int(row.get("gateways_online") or 0)}
