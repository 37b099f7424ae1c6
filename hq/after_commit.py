"""`AfterCommit`: what a transaction of a console or API handler wants done once it has committed: live notices
to console users (`LiveHub.notify`) and waking the downlink for the notices it queued.

It has the shape of `hq.gateway_events.EventContext` (the ingest does the same after its commit), so the domain
rules take either. Nothing is sent before `run`, which the handler calls after the commit.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, Protocol

from aiohttp import web

from hq.appkeys import DOWNLINK, HUB
from hq.gateway_events import Notice


class Effects(Protocol):
    """What the rules call: `hq.gateway_events.EventContext` or `AfterCommit`."""

    downlink_queued: bool

    def notify(self, message: dict[str, Any], *, user_ids: Iterable[int] | None = None,
               roles: Iterable[str] | None = None, clinic_id: str | None = None) -> None: ...


@dataclass(slots=True)
class AfterCommit:
    notices: list[Notice] = field(default_factory=list)
    downlink_queued: bool = False

    def notify(self, message: dict[str, Any], *, user_ids: Iterable[int] | None = None,
               roles: Iterable[str] | None = None, clinic_id: str | None = None) -> None:
        self.notices.append(Notice(message, None if user_ids is None else tuple(user_ids),
                                   None if roles is None else tuple(roles), clinic_id))

    def run(self, app: web.Application) -> None:
        hub = app[HUB]
        for n in self.notices:
            hub.notify(n.message, user_ids=n.user_ids, roles=n.roles, clinic_id=n.clinic_id)
        if self.downlink_queued and DOWNLINK in app:
            app[DOWNLINK].wake()
