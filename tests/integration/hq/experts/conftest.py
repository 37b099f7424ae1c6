"""The expert directory's database tests: an engine on an upgraded, seeded database (SQLite and PostgreSQL)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import sqlalchemy as sa

from hq import db


@pytest.fixture
def engine(db_url: str) -> Iterator[sa.Engine]:
    eng = db.create_engine_for(db_url)
    db.upgrade_schema(eng)
    yield eng
    eng.dispose()
