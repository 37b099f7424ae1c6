"""Each gateway's HQ-managed settings: the versions coordinators make, each sent to the gateway as a downlink
notice of kind "config", and the gateway's answer from its receipt: applied, or rejected with its reason.

A version is a complete set of managed values (what it leaves out follows the gateway's TOML file). The rules of
the values are `gateway.managed_settings`, which the gateway also applies; synchronous SQLAlchemy Core in the
caller's transaction (the receipt hook in the ingest transaction).
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa

from gateway import wire
from gateway.managed_settings import ManagedSettings
from hq import downlink
from hq.gateway_events import EventContext
from hq.models import gateway_config_versions

NOTICE_KIND = "config"  # the gateway registers its handler for this kind (gateway.remote_config)
HISTORY_SHOWN = 20


def new_version(conn: sa.Connection, gateway_id: str, settings: ManagedSettings, *, actor: str, now_ms: int) -> int:
    """Record the next version for the gateway and queue it on the downlink; returns the version. A version
    still pending is superseded: the gateway may get both and ends up with the newer one either way."""
    v = gateway_config_versions.c
    latest = conn.execute(sa.select(sa.func.max(v.version)).where(v.gateway_id == gateway_id)).scalar()
    version = int(latest or 0) + 1
    conn.execute(gateway_config_versions.update().where(v.gateway_id == gateway_id, v.state == "pending")
                 .values(state="superseded"))
    conn.execute(gateway_config_versions.insert().values(
        gateway_id=gateway_id, version=version, settings=settings.to_json(), created_ms=now_ms, created_by=actor,
        state="pending"))
    downlink.send(conn, gateway_id, NOTICE_KIND, {"version": version, "settings": settings.to_json()})
    return version


def on_receipt(ctx: EventContext, message: dict[str, Any], receipt: wire.Receipt) -> None:
    """The gateway's answer to a "config" notice (in the ingest transaction): the version is applied or rejected.
    A gateway whose software does not know the kind only stores the notice: that is a rejection too."""
    version = message["body"].get("version") if isinstance(message.get("body"), dict) else None
    if not isinstance(version, int):
        return
    if receipt.outcome == "applied":
        state, reason = "applied", None
    else:
        state = "rejected"
        reason = receipt.detail or ("this gateway's software does not take settings from HQ"
                                    if receipt.outcome == "stored" else "rejected")
    v = gateway_config_versions.c
    # A superseded version keeps that state (a newer one is on its way) but records the answer.
    conn = ctx.conn
    conn.execute(gateway_config_versions.update()
                 .where(v.gateway_id == message["gateway_id"], v.version == version, v.state == "pending")
                 .values(state=state, acked_ms=ctx.hq_ms, reason=reason))
    conn.execute(gateway_config_versions.update()
                 .where(v.gateway_id == message["gateway_id"], v.version == version, v.state == "superseded",
                        v.acked_ms.is_(None))
                 .values(acked_ms=ctx.hq_ms, reason=reason if state == "rejected" else None))
    ctx.notify({"type": "gateway_config", "gateway_id": message["gateway_id"], "version": version, "state": state,
                "reason": reason}, roles=("admin", "coordinator"))


def history(conn: sa.Connection, gateway_id: str, limit: int = HISTORY_SHOWN) -> list[dict[str, Any]]:
    v = gateway_config_versions.c
    q = (sa.select(gateway_config_versions).where(v.gateway_id == gateway_id).order_by(v.version.desc())
         .limit(limit))
    return [dict(r) for r in conn.execute(q).mappings()]


def states(engine: sa.Engine) -> dict[str, dict[str, Any]]:
    """Per gateway: its newest version (any state) and its newest applied version."""
    v = gateway_config_versions.c
    out: dict[str, dict[str, Any]] = {}
    with engine.connect() as conn:
        newest = sa.select(v.gateway_id, sa.func.max(v.version).label("version")).group_by(v.gateway_id).subquery()
        for row in conn.execute(sa.select(gateway_config_versions).join(
                newest, sa.and_(v.gateway_id == newest.c.gateway_id, v.version == newest.c.version))).mappings():
            out.setdefault(row["gateway_id"], {})["latest"] = dict(row)
        applied = (sa.select(v.gateway_id, sa.func.max(v.version).label("version")).where(v.state == "applied")
                   .group_by(v.gateway_id).subquery())
        for row in conn.execute(sa.select(gateway_config_versions).join(
                applied, sa.and_(v.gateway_id == applied.c.gateway_id, v.version == applied.c.version))).mappings():
            out.setdefault(row["gateway_id"], {})["applied"] = dict(row)
    return out
