"""Patient check-in on the gateway's local screen: the form, linking a monitor to the checked-in patient, and
what became of each check-in (queued while HQ is unreachable, received by HQ, matched to an HQ patient).

A check-in is committed to the outbox (a PATIENT_CHECKIN event, consultation lane) together with its local
row and the device link, in one transaction: it works offline and is reconciled by HQ when the link returns.
A linked device's readings carry the patient's record number from then on (`linked_patient`, read by
capture). HQ's answer arrives as a `checkin_result` notice in the inbox. Validation is `gateway.checkin_form`.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from aiohttp import web

from gateway import checkin_form, wire
from gateway.capture import DeviceHealth
from gateway.inbox import Handled
from gateway.local_ui.shell import GATEWAY, check_same_origin, e, error_block, page, response
from gateway.outbox import LANE_TABLES, Entry, Outbox, OutboxError

log = logging.getLogger(__name__)

RECENT_SHOWN = 50
DOT = " \u00b7 "
JUST_DONE = ' class="done"'

metadata = sa.MetaData()
# Check-ins made here, and what HQ made of each (null until its notice arrives).
checkins_table = sa.Table(
    "checkins", metadata,
    sa.Column("id", sa.Text, primary_key=True),  # uuid4 hex, the event's checkin_id
    sa.Column("seq", sa.Integer, nullable=False),  # the outbox entry that carries it to HQ
    sa.Column("mrn", sa.Text, nullable=False),
    sa.Column("name", sa.Text),
    sa.Column("body", sa.Text, nullable=False),  # the event body, JSON
    sa.Column("created_ms", sa.Integer, nullable=False),
    sa.Column("hq_patient_id", sa.Integer),
    sa.Column("hq_outcome", sa.Text),
    sa.Column("hq_detail", sa.Text),  # JSON: HQ's result notice
)
# Which patient (record number) each linked device's readings belong to.
links_table = sa.Table(
    "device_links", metadata,
    sa.Column("device_id", sa.Text, primary_key=True),
    sa.Column("mrn", sa.Text, nullable=False),
    sa.Column("checkin_id", sa.Text, nullable=False),
    sa.Column("linked_ms", sa.Integer, nullable=False),
)


def clock_ms() -> int:
    return time.time_ns() // 1_000_000


@dataclass(frozen=True, slots=True)
class CheckinState:
    checkin_id: str
    mrn: str
    name: str | None
    created_ms: int
    state: str  # queued | received | reconciled
    hq_patient_id: int | None
    hq_outcome: str | None
    hq_detail: dict[str, Any] | None
    devices: list[str]

    def summary(self) -> str:
        if self.state == "queued":
            return "queued: will be sent to HQ when the link returns"
        if self.state == "received":
            return "received by HQ"
        detail = self.hq_detail or {}
        outcome = (self.hq_outcome or "").replace("_", " ")
        name = detail.get("name") or ""
        return f"HQ: {outcome}, patient {name} (HQ record {self.hq_patient_id})".replace("  ", " ")

    def to_json(self) -> dict[str, Any]:
        return {"checkin_id": self.checkin_id, "mrn": self.mrn, "name": self.name, "created_ms": self.created_ms,
                "state": self.state, "summary": self.summary(), "hq_patient_id": self.hq_patient_id,
                "hq_outcome": self.hq_outcome, "hq_detail": self.hq_detail, "devices": self.devices}


class CheckinDesk:
    """The check-ins and device links of one gateway, stored in its outbox database."""

    def __init__(self, outbox: Outbox, devices: dict[str, DeviceHealth]) -> None:
        self.outbox = outbox
        self.devices = devices
        self._links: dict[str, str] = {}
        self.checkins_total = 0

    async def open(self) -> None:
        def prepare(conn: sa.Connection) -> dict[str, str]:
            metadata.create_all(conn)
            return {r.device_id: r.mrn for r in conn.execute(sa.select(links_table.c.device_id, links_table.c.mrn))}

        self._links, _ = await self.outbox.commit_with(prepare, [])

    def linked_patient(self, device_id: str) -> str | None:
        """The record number a device's readings belong to while it is linked (capture asks for every batch)."""
        return self._links.get(device_id)

    def links(self) -> dict[str, str]:
        return dict(self._links)

    async def check_in(self, form: Mapping[str, Any]) -> CheckinState:
        now = clock_ms()
        reported = {d: h.patient_id for d, h in self.devices.items()}
        checkin = checkin_form.parse(form, checkin_id=uuid.uuid4().hex, now_ms=now,
                                     today=dt.datetime.fromtimestamp(now / 1000, dt.UTC).date(), devices=reported)
        body = checkin.event_body()
        entry = Entry("event", checkin_form.EVENT_METRIC, None, None, now, now, checkin.mrn, "local-screen", body,
                      lane_hint=wire.Lane.CONSULT)

        def store(conn: sa.Connection) -> int:
            # Runs on the outbox's one database thread right before the entry is inserted in this transaction:
            # next_seq is the entry's seq.
            seq = self.outbox.next_seq
            conn.execute(checkins_table.insert().values(
                id=checkin.checkin_id, seq=seq, mrn=checkin.mrn, name=checkin.name or checkin.family_name,
                body=json.dumps(body, ensure_ascii=False), created_ms=now))
            for device_id, _reported in checkin.devices:
                conn.execute(links_table.delete().where(links_table.c.device_id == device_id))
                conn.execute(links_table.insert().values(device_id=device_id, mrn=checkin.mrn,
                                                         checkin_id=checkin.checkin_id, linked_ms=now))
            return seq

        expected, seqs = await self.outbox.commit_with(store, [entry])
        assert seqs == [expected], (seqs, expected)
        for device_id, _reported in checkin.devices:
            self._links[device_id] = checkin.mrn
        self.checkins_total += 1
        log.info("check-in %s committed (outbox seq %d); %d device(s) linked", checkin.checkin_id, seqs[0],
                 len(checkin.devices))
        found = await self.recent(limit=1)
        return found[0]

    async def unlink(self, device_id: str) -> bool:
        def remove(conn: sa.Connection) -> int:
            return int(conn.execute(links_table.delete().where(links_table.c.device_id == device_id)).rowcount)

        removed, _ = await self.outbox.commit_with(remove, [])
        self._links.pop(device_id, None)
        return removed > 0

    async def on_result(self, notice: wire.Notice) -> Handled:
        """HQ's answer to a check-in: which patient it is (inbox handler of `checkin_result`)."""
        body = notice.body
        checkin_id, patient_id = body.get("checkin_id"), body.get("patient_id")
        if not isinstance(checkin_id, str) or not isinstance(patient_id, int):
            return Handled("rejected", "checkin_result needs checkin_id (text) and patient_id (integer)")

        def record(conn: sa.Connection) -> int:
            return int(conn.execute(checkins_table.update().where(checkins_table.c.id == checkin_id).values(
                hq_patient_id=patient_id, hq_outcome=str(body.get("outcome") or ""),
                hq_detail=json.dumps(body, ensure_ascii=False))).rowcount)

        updated = await self.outbox.query(record)
        if not updated:
            return Handled("rejected", f"no check-in {checkin_id} on this gateway")
        return Handled("applied")

    async def recent(self, limit: int = RECENT_SHOWN) -> list[CheckinState]:
        consult = LANE_TABLES[wire.Lane.CONSULT]

        def read(conn: sa.Connection) -> list[CheckinState]:
            rows = conn.execute(sa.select(checkins_table).order_by(checkins_table.c.created_ms.desc(),
                                                                   checkins_table.c.seq.desc()).limit(limit)).all()
            waiting = set(conn.execute(sa.select(consult.c.seq).where(
                consult.c.seq.in_([r.seq for r in rows]))).scalars()) if rows else set()
            out = []
            for r in rows:
                state = "reconciled" if r.hq_patient_id is not None else "queued" if r.seq in waiting else "received"
                devices = [d["device_id"] for d in json.loads(r.body).get("devices", [])]
                out.append(CheckinState(r.id, r.mrn, r.name, r.created_ms, state, r.hq_patient_id, r.hq_outcome,
                                        json.loads(r.hq_detail) if r.hq_detail else None, devices))
            return out

        return await self.outbox.query(read)

# ---- the page and its JSON twin ---------------------------------------------------------------------
routes = web.RouteTableDef()


def _desk(request: web.Request) -> CheckinDesk:
    desk = request.app[GATEWAY].checkin
    if desk is None:
        raise web.HTTPNotFound(text="check-in is not set up on this gateway")
    return desk


@routes.get("/checkin")
async def checkin_page(request: web.Request) -> web.Response:
    desk = _desk(request)
    return _page(request, desk, await desk.recent(), done=request.query.get("done"))


@routes.post("/checkin")
async def checkin_form_post(request: web.Request) -> web.Response:
    check_same_origin(request)
    desk = _desk(request)
    form = {k: str(v) for k, v in (await request.post()).items()}
    try:
        state = await desk.check_in(form)
    except checkin_form.CheckinError as exc:
        return _page(request, desk, await desk.recent(), error=str(exc), form=form, status=400)
    except OutboxError as exc:
        log.error("check-in not stored: %s", exc)
        return _page(request, desk, await desk.recent(), error=f"not stored, try again: {exc}", form=form,
                     status=503)
    raise web.HTTPSeeOther(f"/checkin?done={state.checkin_id}")


@routes.post("/checkin/unlink")
async def unlink_form(request: web.Request) -> web.Response:
    check_same_origin(request)
    form = await request.post()
    await _desk(request).unlink(str(form.get("device_id", "")))
    raise web.HTTPSeeOther("/checkin")


@routes.get("/api/v1/checkins")
async def api_list(request: web.Request) -> web.Response:
    desk = _desk(request)
    return web.json_response({"checkins": [c.to_json() for c in await desk.recent()], "links": desk.links()})


@routes.post("/api/v1/checkins")
async def api_create(request: web.Request) -> web.Response:
    check_same_origin(request)
    desk = _desk(request)
    try:
        body = await request.json()
    except ValueError:
        return web.json_response({"error": "the body is not JSON"}, status=400)
    if not isinstance(body, dict):
        return web.json_response({"error": "the body must be a JSON object"}, status=400)
    try:
        state = await desk.check_in(body)
    except checkin_form.CheckinError as exc:
        return web.json_response({"error": str(exc), "field": exc.field}, status=400)
    except OutboxError as exc:
        return web.json_response({"error": f"not stored, try again: {exc}"}, status=503)
    return web.json_response(state.to_json(), status=201)


def _page(request: web.Request, desk: CheckinDesk, recent: list[CheckinState], *, error: str | None = None,
          done: str | None = None, form: Mapping[str, str] | None = None, status: int = 200) -> web.Response:
    body = render(desk, recent, error=error, done=done, form=form)
    return response(page(request.app[GATEWAY], "Check-in", body, current="/checkin",
                         page_data={"view": "checkin"}), status=status)


def render(desk: CheckinDesk, recent: list[CheckinState], *, error: str | None = None, done: str | None = None,
           form: Mapping[str, str] | None = None) -> str:
    form = form or {}
    links = desk.links()
    device_rows = "".join(
        f"<tr data-device=\"{e(d)}\"><td>{e(d)}</td><td>{e(h.state)}</td><td>{e(h.patient_id or '')}</td>"
        f"<td class=\"linked\">{e(links.get(d, ''))}</td><td>"
        + (f"<form method=\"post\" action=\"/checkin/unlink\"><input type=\"hidden\" name=\"device_id\" "
           f"value=\"{e(d)}\"><button type=\"submit\">Unlink</button></form>" if d in links else "")
        + "</td></tr>" for d, h in sorted(desk.devices.items()))
    options = "".join(f"<option value=\"{e(d)}\"{' selected' if form.get('device_id') == d else ''}>{e(d)}</option>"
                      for d in sorted(desk.devices))
    fields = "".join(
        f"<label>{e(label)} <input name=\"{name}\" value=\"{e(form.get(name, ''))}\"{' required' if req else ''}>"
        "</label>" for name, label, req in (
            ("mrn", "Record number", True), ("name", "Name", False), ("family_name", "Family name", False),
            ("given_name", "Given name", False), ("alt_name", "Name in another script", False),
            ("national_id", "National id", False), ("birth_date", "Birth date (YYYY-MM-DD)", False),
            ("phone", "Phone", False), ("reason", "Reason for the visit", False)))
    sexes = "".join(f"<option value=\"{s}\"{' selected' if form.get('sex') == s else ''}>{s or '-'}</option>"
                    for s in ("", *checkin_form.SEXES))
    items = "".join(
        f"<li data-checkin=\"{e(c.checkin_id)}\" data-state=\"{e(c.state)}\""
        f"{JUST_DONE if c.checkin_id == done else ''}>"
        f"<strong>{e(c.name or '')}</strong> {e(c.mrn)}{DOT}<span class=\"state\">{e(c.summary())}</span>"
        + (f"{DOT}linked {e(', '.join(c.devices))}" if c.devices else "") + "</li>" for c in recent)
    problem = error_block(error)
    body = (
        "<h1>Patient check-in</h1>" + problem +
        "<form method=\"post\" action=\"/checkin\" id=\"checkin\">" + fields +
        f"<label>Sex <select name=\"sex\">{sexes}</select></label>"
        f"<label>Link a monitor <select name=\"device_id\"><option value=\"\">-</option>{options}</select></label>"
        "<button type=\"submit\">Check in</button></form>"
        "<p class=\"hint\">Works without HQ: the check-in is stored here and sent when the link returns. A linked "
        "monitor's readings belong to this patient from now on.</p>"
        "<h2>Devices</h2><table id=\"devices\"><thead><tr><th>Device</th><th>State</th><th>Patient id it sends"
        f"</th><th>Linked to</th><th></th></tr></thead><tbody>{device_rows}</tbody></table>"
        f"<h2>Recent check-ins</h2><ul id=\"checkins\">{items}</ul>")
    return body


