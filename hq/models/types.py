"""The one MetaData of HQ's schema and the column types every table module shares.

Types only; tables are in the domain modules of `hq.models`.
"""

from __future__ import annotations

import sqlalchemy as sa

# Constraint names are fixed by convention so that migrations can name what they alter or drop, the same
# on SQLite and PostgreSQL.
metadata = sa.MetaData(naming_convention={
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
})

# SQLite only autoincrements an INTEGER PRIMARY KEY, so BIGINT becomes INTEGER there (both are 64-bit).
BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
Millis = sa.BigInteger()  # Unix time in milliseconds, UTC


def id_column() -> sa.Column[int]:
    return sa.Column("id", BigId, primary_key=True, autoincrement=True)


def ref(column: str, target: str, *, nullable: bool = True, ondelete: str | None = None) -> sa.Column[int]:
    """A BigId foreign key column to `target` ("table.id")."""
    return sa.Column(column, BigId, sa.ForeignKey(target, ondelete=ondelete), nullable=nullable)
