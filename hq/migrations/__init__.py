"""Alembic migrations of HQ's database: `env.py` and one revision per step in `versions/`.

Run by `hq.db.upgrade_schema` at every start (and `python -m hq migrate`); never by hand-written DDL elsewhere.
"""
