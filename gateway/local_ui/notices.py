"""The staff screen's list of what HQ sent this clinic (confirmations, reminders, consultation updates, reports),
newest first, from the gateway's inbox; readable with HQ unreachable.

Markup only: the inbox stores the notices, `/api/v1/notices` (local_api) is the JSON twin.
"""

from __future__ import annotations

import json

from aiohttp import web

from gateway.local_ui.consultation_pages import local_time
from gateway.local_ui.shell import GATEWAY, e, listing, page, response

routes = web.RouteTableDef()

# Fields not worth showing in the list (a report's whole HTML is on its consultation's page).
HIDDEN_FIELDS = frozenset({"html", "public_id"})


@routes.get("/notices")
async def notices_page(request: web.Request) -> web.Response:
    gw = request.app[GATEWAY]
    stored = await gw.inbox.recent(limit=100)
    items = []
    for n in stored:
        summary = ", ".join(f"{k}: {v if isinstance(v, str) else json.dumps(v, ensure_ascii=False)}"
                            for k, v in n.body.items() if k not in HIDDEN_FIELDS)
        link = ""
        if isinstance(n.body.get("public_id"), str) and n.kind.startswith("consultation."):
            link = f" <a href=\"/consultations/{e(n.body['public_id'])}\">open</a>"
        items.append(f"<li class=\"notice\" data-kind=\"{e(n.kind)}\" data-id=\"{n.id}\">"
                     f"<time>{e(local_time(n.received_ms))}</time> <strong>{e(n.kind)}</strong> "
                     f"<span class=\"summary\">{e(summary)}</span>{link}</li>")
    body = (f"<h1>Notices from HQ</h1><ul class=\"notices\" id=\"notices\">"
            f"{listing(''.join(items), 'Nothing received yet.')}</ul>")
    return response(page(gw, "Notices", body, current="/notices", page_data={"view": "notices"}))
