"""The web console's fleet overview at /; a patient's page (timeline and live vitals) is `hq.console.patients`.

Handlers gather rows (in a thread) and hand JSON-shaped data to `hq.console.html`; no markup here.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from aiohttp import web

from hq import queries
from hq.api import fleet_view
from hq.appkeys import CONFIG, ENGINE
from hq.auth import OPERATIONS, clinic_scope, require
from hq.clock import now_ms
from hq.console import html
from hq.query_params import ObservationQuery
from hq.representations import clinic_json, observation_json

STATIC_DIR = Path(__file__).parent / "static"
MAX_PATIENTS_PER_CLINIC = 50
GAPS_SHOWN = 5  # per gateway on the fleet page

routes = web.RouteTableDef()


FleetData = tuple[list[dict[str, Any]], list[dict[str, Any]], dict[str, list[tuple[str, list[dict[str, Any]]]]],
                  dict[str, list[dict[str, Any]]]]


def _fleet_data(engine: sa.Engine, since_ms: int, clinic_id: str | None) -> FleetData:
    clinics = [clinic_json(r) for r in queries.list_clinics(engine) if clinic_id in (None, r["id"])]
    gateways = fleet_view(engine, clinic_id)
    gaps = {g["gateway_id"]: [observation_json(r) for r in queries.find_observations(
        engine, ObservationQuery(gateway_id=g["gateway_id"], kind="gap", limit=GAPS_SHOWN))] for g in gateways}
    patients: dict[str, list[tuple[str, list[dict[str, Any]]]]] = {}
    for row in queries.recent_patients(engine, since_ms):
        if clinic_id is not None and row["clinic_id"] != clinic_id:
            continue
        per_clinic = patients.setdefault(row["clinic_id"], [])
        if len(per_clinic) < MAX_PATIENTS_PER_CLINIC:
            vitals = [observation_json(v) for v in queries.latest_vitals(engine, row["patient_id"])]
            per_clinic.append((row["patient_id"], vitals))
    return clinics, gateways, patients, gaps


@routes.get("/")
async def fleet(request: web.Request) -> web.Response:
    actor = await require(request, *OPERATIONS)
    clinic_id = clinic_scope(request, actor, None)
    since_ms = now_ms() - request.app[CONFIG].console.recent_patients_s * 1000
    clinics, gateways, patients, gaps = await asyncio.to_thread(_fleet_data, request.app[ENGINE], since_ms,
                                                                 clinic_id)
    return html.response(html.fleet_page(clinics, gateways, patients, gaps, actor=actor))
