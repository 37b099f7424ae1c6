"""Who may take part in (or watch) a consultation's call, and see its recordings: coordinators and admins, and
the experts the consultation is assigned or offered to. Clinic staff take part from the gateway's LAN screen.

The check only; the call itself is `hq.calls`, the recordings `hq.recordings`.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

import sqlalchemy as sa
from aiohttp import web

from hq import call_store
from hq.appkeys import ENGINE
from hq.auth import Role, forbidden, require

CALL_ROLES = (Role.EXPERT, Role.COORDINATOR, Role.ADMIN)  # clinic staff take part from the gateway's LAN screen


@dataclass(frozen=True, slots=True)
class Caller:
    name: str
    role: str
    user_id: int | None
    label: str  # for the audit log, e.g. "user:alice"


async def caller_of(request: web.Request, public_id: str) -> Caller:
    """Who may take part in (or watch) a consultation's call: coordinators and admins, and experts the
    consultation is assigned or offered to. 401/redirect to login, 403 otherwise."""
    actor = await require(request, *CALL_ROLES)
    if actor.role is Role.EXPERT and not await asyncio.to_thread(_assigned, request.app[ENGINE], public_id,
                                                                 actor.expert_id):
        raise forbidden(request, f"consultation {public_id} is not assigned to you")
    return Caller(actor.display_name, str(actor.role), actor.user_id, actor.label)


def _assigned(engine: sa.Engine, public_id: str, expert_id: int | None) -> bool:
    with engine.connect() as conn:
        return expert_id is not None and call_store.expert_assigned(conn, public_id, expert_id)
