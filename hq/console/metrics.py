"""Consultation metrics in the console (/consultation-metrics: figures by clinic, expert, department, hour or
weekday, and the demand heat map) and the JSON API with its CSV export; each role counts what it may see.

Thin handlers and their markup: the figures are `hq.metrics`' SQL aggregation.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Any

import sqlalchemy as sa
from aiohttp import web

from hq import audit, metrics, openapi
from hq.appkeys import CONFIG, ENGINE
from hq.auth import Actor, Role, require
from hq.clock import now_ms
from hq.console import html
from hq.console.experts_html import seconds_text
from hq.console.html import e
from hq.query_params import ParamError

routes = web.RouteTableDef()
# Not /metrics: that is the Prometheus exposition every service serves.
PAGE = "/consultation-metrics"

BY_LABELS = {"none": "everything", "clinic": "clinic", "expert": "expert", "department": "department",
             "hour": "hour of day", "weekday": "weekday", "kind": "kind"}


def scope(actor: Actor) -> metrics.Scope:
    """Coordinators count everything; department heads their departments, clinic staff their clinic, experts
    their own consultations."""
    if actor.role is Role.DEPARTMENT_HEAD:
        return metrics.Scope(department_ids=actor.department_ids)
    if actor.role is Role.CLINIC_STAFF:
        return metrics.Scope(clinic_id=actor.clinic_id)
    if actor.role is Role.EXPERT:
        return metrics.Scope(expert_id=actor.expert_id if actor.expert_id is not None else -1)
    return metrics.Scope()


def _query(request: web.Request, params: Mapping[str, str]) -> metrics.MetricsQuery:
    return metrics.parse_query(params, now_ms=now_ms(), default_zone=request.app[CONFIG].metrics.time_zone)


def _figures(engine: sa.Engine, query: metrics.MetricsQuery, where: metrics.Scope
             ) -> tuple[metrics.Report, list[list[int]]]:
    with engine.connect() as conn:
        return metrics.compute(conn, query, where), metrics.heatmap(conn, query, where)


def _report(engine: sa.Engine, query: metrics.MetricsQuery, where: metrics.Scope) -> metrics.Report:
    with engine.connect() as conn:
        return metrics.compute(conn, query, where)


def _heatmap(engine: sa.Engine, query: metrics.MetricsQuery, where: metrics.Scope) -> list[list[int]]:
    with engine.connect() as conn:
        return metrics.heatmap(conn, query, where)


def _export(engine: sa.Engine, actor: Actor, query: metrics.MetricsQuery, where: metrics.Scope) -> str:
    with engine.begin() as conn:
        report = metrics.compute(conn, query, where)
        # An export leaves the system: on record, with what it held.
        audit.record(conn, actor, "metrics.export", "metrics", query.by, clinic_id=where.clinic_id,
                     detail={"by": query.by, "since": metrics.iso(query.since_ms),
                             "until": metrics.iso(query.until_ms), "time_zone": query.time_zone, "kind": query.kind,
                             "rows": len(report.rows)})
        return metrics.to_csv(report)


def query_json(query: metrics.MetricsQuery) -> dict[str, Any]:
    return {"by": query.by, "since": metrics.iso(query.since_ms), "until": metrics.iso(query.until_ms),
            "time_zone": query.time_zone, "kind": query.kind, "clinic_id": query.clinic_id,
            "department_id": query.department_id, "expert_id": query.expert_id}


# ---- JSON API -----------------------------------------------------------------------------------
@routes.get("/api/v1/metrics")
async def api_metrics(request: web.Request) -> web.Response:
    actor = await require(request)
    query = _query(request, request.query)
    report = await asyncio.to_thread(_report, request.app[ENGINE], query, scope(actor))
    return web.json_response({"query": query_json(query), "rows": [r.to_json() for r in report.rows],
                              "total": report.total.to_json()})


@routes.get("/api/v1/metrics/heatmap")
async def api_heatmap(request: web.Request) -> web.Response:
    actor = await require(request)
    query = _query(request, request.query)
    grid = await asyncio.to_thread(_heatmap, request.app[ENGINE], query, scope(actor))
    return web.json_response({"query": query_json(query), "weekdays": list(metrics.WEEKDAYS),
                              "hours": list(range(24)), "counts": grid})


@routes.get("/api/v1/metrics.csv")
async def api_metrics_csv(request: web.Request) -> web.Response:
    actor = await require(request)
    query = _query(request, request.query)
    text = await asyncio.to_thread(_export, request.app[ENGINE], actor, query, scope(actor))
    name = f"consultations-by-{query.by}-{metrics.iso(query.since_ms)[:10]}-{metrics.iso(query.until_ms)[:10]}.csv"
    return web.Response(text=text, content_type="text/csv", charset="utf-8",
                        headers={"Content-Disposition": f'attachment; filename="{name}"'})


# ---- the page -----------------------------------------------------------------------------------
def _number(value: float | None, form: str = "{:.1f}") -> str:
    return "\u2014" if value is None else form.format(value)


def metrics_page(actor: Actor, query: metrics.MetricsQuery, report: metrics.Report, grid: list[list[int]],
                 params: Mapping[str, str], error: str | None = None) -> str:
    by_options = "".join(f"<option value=\"{k}\"{' selected' if k == query.by else ''}>{e(v)}</option>"
                         for k, v in BY_LABELS.items())
    kinds = "".join(f"<option value=\"{k}\"{' selected' if k == query.kind else ''}>{k}</option>"
                    for k in ("", *metrics.KINDS))
    form = (
        f"<form method=\"get\" action=\"{PAGE}\" class=\"inline\" id=\"metrics-filters\">"
        f"<label>From <input type=\"date\" name=\"since\" value=\"{e(params.get('since', ''))}\"></label>"
        f"<label>Until (inclusive) <input type=\"date\" name=\"until\" value=\"{e(params.get('until', ''))}\"></label>"
        f"<label>By <select name=\"by\">{by_options}</select></label>"
        f"<label>Kind <select name=\"kind\">{kinds}</select></label>"
        f"<label>Time zone <input name=\"tz\" value=\"{e(query.time_zone)}\" size=\"14\"></label>"
        "<button type=\"submit\">Show</button>"
        "<button type=\"submit\" formaction=\"/api/v1/metrics.csv\">Export CSV</button></form>")
    head = ("<tr><th>" + e(BY_LABELS[query.by].capitalize()) + "</th><th>Requests</th><th>Done</th>"
            "<th>Cancelled</th><th>Response median</th><th>Response p90</th><th>Duration median</th>"
            "<th>Duration p90</th><th>Rating</th><th>Advice adopted</th></tr>")

    def line(row: metrics.Row, css: str = "") -> str:
        rate = row.adoption_rate
        adoption = "\u2014" if rate is None else f"{rate * 100:.0f} % of {row.adoption_answers}"
        return (f"<tr class=\"{css}\" data-key=\"{e(row.key)}\"><td>{e(row.label)}</td><td class=\"num\">{row.volume}"
                f"</td><td class=\"num\">{row.done}</td><td class=\"num\">{row.cancelled}</td>"
                f"<td class=\"num\">{seconds_text(row.response_median_s)}</td><td class=\"num\">"
                f"{seconds_text(row.response_p90_s)}</td><td class=\"num\">{seconds_text(row.duration_median_s)}</td>"
                f"<td class=\"num\">{seconds_text(row.duration_p90_s)}</td><td class=\"num\">{_number(row.rating_avg)}"
                f" ({row.ratings})</td><td class=\"num\">{e(adoption)}</td></tr>")

    rows = "".join(line(r) for r in report.rows)
    if query.by != "none":
        rows += line(report.total, "total")
    levels = metrics.scaled(grid)
    hours = "".join(f"<th>{h:02d}</th>" for h in range(24))
    heat_rows = "".join(
        f"<tr><th>{e(metrics.WEEKDAYS[d][:3])}</th>" + "".join(
            f"<td class=\"heat heat-{levels[d][h]}\" title=\"{e(metrics.WEEKDAYS[d])} {h:02d}:00: {grid[d][h]} "
            f"requests\">{grid[d][h] or ''}</td>" for h in range(24)) + "</tr>" for d in range(7))
    problem = f"<p class=\"error\" role=\"alert\">{e(error)}</p>" if error else ""
    window = f"{metrics.iso(query.since_ms)} \u2013 {metrics.iso(query.until_ms)}"
    body = (
        f"<h1>Metrics</h1>{problem}{form}<p class=\"window\">Consultations requested {e(window)} (UTC); hours and "
        f"weekdays in {e(query.time_zone)}. Response time: from HQ receiving an urgent or emergency request to an "
        "expert accepting it.</p>"
        f"<table class=\"list\" id=\"metrics\"><thead>{head}</thead><tbody>{rows}</tbody></table>"
        "<h2>Demand by weekday and hour</h2>"
        f"<table class=\"heatmap\" id=\"heatmap\"><thead><tr><th></th>{hours}</tr></thead><tbody>{heat_rows}</tbody>"
        "</table>")
    return html.page("Metrics", body, page_data={"view": "metrics"}, actor=actor, current=PAGE, scripts=())


@routes.get(PAGE)
async def metrics_view(request: web.Request) -> web.Response:
    actor = await require(request)
    params = {k: v for k, v in request.query.items() if v}
    try:
        query = _query(request, params)
        status, error = 200, None
    except ParamError as exc:
        query = _query(request, {})
        status, error = 400, str(exc)
    report, grid = await asyncio.to_thread(_figures, request.app[ENGINE], query, scope(actor))
    return html.response(metrics_page(actor, query, report, grid, params, error), status=status)


_ROW = {"type": "object", "properties": {
    "key": {"type": ["string", "integer", "null"], "description": "Clinic id, expert id, department id, hour "
                                                                  "(0-23), weekday (0 Monday) or kind"},
    "label": {"type": "string"}, "volume": {"type": "integer", "description": "Consultations requested"},
    "done": {"type": "integer", "description": "Reported or closed"}, "cancelled": {"type": "integer"},
    "responses": {"type": "integer", "description": "Urgent and emergency consultations an expert accepted"},
    "response_median_s": {"type": ["number", "null"], "description": "accepted_ms - received_ms, median"},
    "response_p90_s": {"type": ["number", "null"], "description": "Nearest rank"},
    "duration_median_s": {"type": ["number", "null"]}, "duration_p90_s": {"type": ["number", "null"]},
    "duration_mean_s": {"type": ["number", "null"]}, "ratings": {"type": "integer"},
    "rating_avg": {"type": ["number", "null"], "description": "1..5"}, "adoption_answers": {"type": "integer"},
    "adopted": {"type": "integer"}, "adoption_rate": {"type": ["number", "null"]}}}
_QUERY = {"type": "object", "properties": {
    "by": {"enum": list(metrics.DIMENSIONS)}, "since": {"type": "string", "format": "date-time"},
    "until": {"type": "string", "format": "date-time"}, "time_zone": {"type": "string"},
    "kind": {"type": ["string", "null"]}, "clinic_id": {"type": ["string", "null"]},
    "department_id": {"type": ["integer", "null"]}, "expert_id": {"type": ["integer", "null"]}}}
_PARAMS = [openapi.param("by", "Group by (default none)", {"enum": list(metrics.DIMENSIONS)}),
           openapi.param("since", "From: a date (start of the day in tz) or an ISO 8601 date-time; default 30 days "
                                  "before until"),
           openapi.param("until", "Until: a date (inclusive, in tz) or an ISO 8601 date-time; default now"),
           openapi.param("kind", "Only this kind", {"enum": list(metrics.KINDS)}),
           openapi.param("clinic_id", "Only this clinic"), openapi.param("department_id", "Only this department"),
           openapi.param("expert_id", "Only this expert"),
           openapi.param("tz", "Time zone of hours, weekdays and dates (default [metrics] time_zone)")]
_SCOPED = ("Coordinators count everything; department heads their departments, clinic staff their clinic, "
           "experts their own consultations")

OPENAPI_PATHS: dict[str, Any] = {
    "/api/v1/metrics": {"get": {
        "summary": "Consultation volume, response time, duration, rating and adoption, grouped", "description": _SCOPED,
        "parameters": _PARAMS,
        "responses": {"200": openapi.ok({"type": "object", "properties": {
            "query": _QUERY, "rows": {"type": "array", "items": _ROW}, "total": _ROW}}),
            "400": openapi.bad_request(), "401": openapi.UNAUTHORIZED}}},
    "/api/v1/metrics/heatmap": {"get": {
        "summary": "Requests per weekday and local hour (the demand heat map)", "description": _SCOPED,
        "parameters": [p for p in _PARAMS if p["name"] != "by"],
        "responses": {"200": openapi.ok({"type": "object", "properties": {
            "query": _QUERY, "weekdays": {"type": "array", "items": {"type": "string"}},
            "hours": {"type": "array", "items": {"type": "integer"}},
            "counts": {"type": "array", "description": "7 rows (Monday first) of 24 counts",
                       "items": {"type": "array", "items": {"type": "integer"}}}}}),
            "400": openapi.bad_request(), "401": openapi.UNAUTHORIZED}}},
    "/api/v1/metrics.csv": {"get": {
        "summary": "The same figures as CSV, for regulators; the export is audited", "description": _SCOPED,
        "parameters": _PARAMS,
        "responses": {"200": {"description": "CSV", "content": {"text/csv": {"schema": {"type": "string"}}}},
                      "400": openapi.bad_request(), "401": openapi.UNAUTHORIZED}}},
}
