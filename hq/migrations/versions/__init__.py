"""Alembic revisions of HQ's schema, one file per step, applied in order by `hq.db.upgrade_schema`."""
