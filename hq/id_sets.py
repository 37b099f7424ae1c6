"""A set of integer ids as ONE bound parameter of a query: `column IN (SELECT value FROM json_each(:ids))` on
SQLite, `column = ANY(:ids)` (an array) on PostgreSQL. Not the queries that use it.

An expanding `IN (:a, :b, ...)` costs a bound parameter each (SQLAlchemy renders and converts every one: about
2 µs an id, the bulk of a query over the thousands of candidates of an emergency) and runs into the databases'
parameter limits, so callers had to cut the ids into chunks; one parameter has neither problem.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql


def among(dialect: sa.Dialect, column: sa.ColumnElement[Any], ids: Iterable[int]) -> sa.ColumnElement[bool]:
    """`column` is one of `ids`."""
    values = list(map(int, ids))  # ints, not rows or numpy scalars: neither JSON nor psycopg take those
    if dialect.name == "postgresql":
        return column == sa.any_(sa.bindparam(None, values, type_=postgresql.ARRAY(sa.BigInteger)))
    listed = sa.func.json_each(sa.bindparam(None, json.dumps(values), type_=sa.String)).table_valued("value")
    return column.in_(sa.select(listed.c.value))



def among_named(dialect_name: str, column: sa.ColumnElement[Any], name: str) -> sa.ColumnElement[bool]:
    """`column` is one of the ids bound later as `name` (`bound(dialect, ids)`): for statements built once per
    dialect."""
    if dialect_name == "postgresql":
        return column == sa.any_(sa.bindparam(name, type_=postgresql.ARRAY(sa.BigInteger)))
    listed = sa.func.json_each(sa.bindparam(name, type_=sa.String)).table_valued("value")
    return column.in_(sa.select(listed.c.value))


def bound(dialect: sa.Dialect, ids: Iterable[int]) -> Any:
    """The value of an `among_named` parameter."""
    values = list(map(int, ids))
    return values if dialect.name == "postgresql" else json.dumps(values)
