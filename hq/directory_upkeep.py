"""The expert directory's upkeep while HQ runs: at start, the seeded taxonomy's new names are added (a newer
version may bring synonyms); then every expert's capability figures are recomputed every
`[experts] capability_refresh_s`.

An aiohttp `cleanup_ctx` for `hq.app.create_app`; the work itself is `hq.departments` and `hq.capability`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator

import sqlalchemy as sa
from aiohttp import web

from hq import capability, departments
from hq.appkeys import CONFIG, ENGINE
from hq.clock import now_ms

log = logging.getLogger(__name__)


def _seed(engine: sa.Engine) -> int:
    with engine.begin() as conn:
        return departments.seed_taxonomy(conn)


def refresh_once(engine: sa.Engine) -> int | None:
    with engine.begin() as conn:
        return capability.refresh(conn, now_ms())


async def _keep_fresh(engine: sa.Engine, interval_s: float) -> None:
    while True:
        started = time.monotonic()
        try:
            count = await asyncio.to_thread(refresh_once, engine)
            log.debug("capability figures of %s experts refreshed in %.0f ms", count,
                      (time.monotonic() - started) * 1000)
        except sa.exc.SQLAlchemyError as exc:
            # Matching goes on with the previous figures; the next round tries again.
            log.error("cannot refresh the experts' capability figures: %s", exc)
        await asyncio.sleep(interval_s)


async def directory_upkeep(app: web.Application) -> AsyncIterator[None]:
    engine = app[ENGINE]
    added = await asyncio.to_thread(_seed, engine)
    if added:
        log.info("department taxonomy: %d new seeded names added", added)
    task = asyncio.create_task(_keep_fresh(engine, app[CONFIG].experts.capability_refresh_s),
                               name="hq-capability")
    yield
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
