"""The JSON API under /api/v1: gateways, clinics, observations, a patient's latest vitals, OpenAPI.

Thin handlers: parameters are parsed in `hq.query_params`, rows read in `hq.queries` (in a thread).
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import replace
from typing import Any

import sqlalchemy as sa
from aiohttp import web

from hq import audit, enrolment, gateway_settings, queries
from hq.appkeys import ENGINE, OPENAPI_PATHS
from hq.auth import OPERATIONS, clinic_scope, require
from hq.openapi import openapi_document
from hq.query_params import ParamError, parse_observation_query
from hq.representations import clinic_json, gateway_json, identity_json, observation_json

log = logging.getLogger(__name__)

routes = web.RouteTableDef()


def json_error(status: int, body: dict[str, Any]) -> web.Response:
    return web.json_response(body, status=status)


@web.middleware
async def api_errors(request: web.Request, handler: Any) -> web.StreamResponse:
    """Parameter errors become 400s naming the parameter; an unreachable database a 503."""
    try:
        response: web.StreamResponse = await handler(request)
        return response
    except ParamError as exc:
        return json_error(400, exc.to_json())
    except sa.exc.SQLAlchemyError as exc:
        log.error("database error serving %s: %s", request.path, exc)
        return json_error(503, {"error": "database unavailable"})


@routes.get("/api/v1/gateways")
async def get_gateways(request: web.Request) -> web.Response:
    actor = await require(request, *OPERATIONS)
    clinic_id = clinic_scope(request, actor, request.query.get("clinic_id"))
    gateways = await asyncio.to_thread(fleet_view, request.app[ENGINE], clinic_id)
    return web.json_response({"gateways": gateways})


def fleet_view(engine: sa.Engine, clinic_id: str | None = None) -> list[dict[str, Any]]:
    """Every gateway (of the clinic) with its status, certificate and HQ-managed settings."""
    rows = queries.list_gateways(engine, clinic_id)
    identities, configs = enrolment.identities(engine), gateway_settings.states(engine)
    return [{**gateway_json(r), **identity_json(r, identities.get(r["id"]), configs.get(r["id"]))} for r in rows]


@routes.get("/api/v1/clinics")
async def get_clinics(request: web.Request) -> web.Response:
    actor = await require(request, *OPERATIONS)
    clinic_id = clinic_scope(request, actor, None)
    rows = await asyncio.to_thread(queries.list_clinics, request.app[ENGINE])
    return web.json_response({"clinics": [clinic_json(r) for r in rows if clinic_id in (None, r["id"])]})


@routes.get("/api/v1/observations")
async def get_observations(request: web.Request) -> web.Response:
    actor = await require(request, *OPERATIONS)
    query = parse_observation_query(request.query)
    query = replace(query, clinic_id=clinic_scope(request, actor, query.clinic_id))
    rows = await asyncio.to_thread(queries.find_observations, request.app[ENGINE], query)
    if query.patient_id is not None:
        await asyncio.to_thread(audit.record_now, request.app[ENGINE], actor, "patient.observations.read",
                                "patient", query.patient_id, clinic_id=query.clinic_id,
                                detail={"rows": len(rows), "metric": query.metric, "kind": query.kind})
    return web.json_response({"observations": [observation_json(r) for r in rows], "order": str(query.order),
                              "limit": query.limit})


@routes.get("/api/v1/patients/{patient_id}/vitals")
async def get_patient_vitals(request: web.Request) -> web.Response:
    actor = await require(request, *OPERATIONS)
    patient_id = request.match_info["patient_id"]
    clinic_id = clinic_scope(request, actor, None)
    rows = await asyncio.to_thread(queries.latest_vitals, request.app[ENGINE], patient_id, clinic_id)
    await asyncio.to_thread(audit.record_now, request.app[ENGINE], actor, "patient.vitals.read", "patient",
                            patient_id, clinic_id=clinic_id)
    return web.json_response({"patient_id": patient_id, "vitals": [observation_json(r) for r in rows]})


@routes.get("/api/v1/openapi.json")
async def get_openapi(request: web.Request) -> web.Response:
    return web.json_response(openapi_document(request.app[OPENAPI_PATHS]))
