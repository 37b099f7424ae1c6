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
    return _among(dialect.name, column, sa.bindparam(None, bound(dialect, ids), type_=sa.Text))


def among_named(dialect_name: str, column: sa.ColumnElement[Any], name: str) -> sa.ColumnElement[bool]:
    """`column` is one of the ids bound later as `name` (`bound(dialect, ids)`): for statements built once per
    dialect."""
    return _among(dialect_name, column, sa.bindparam(name, type_=sa.Text))


def _among(dialect_name: str, column: sa.ColumnElement[Any], ids: sa.BindParameter[str]) -> sa.ColumnElement[bool]:
    if dialect_name == "postgresql":
        return column == sa.any_(sa.cast(ids, postgresql.ARRAY(sa.BigInteger)))
    return column.in_(sa.select(sa.func.json_each(ids).table_valued("value").c.value))


def bound(dialect: sa.Dialect, ids: Iterable[int]) -> str:
    """The value of an `among_named` parameter: the ids as one text, a JSON array on SQLite, an array literal
    ('{1,2}') on PostgreSQL. Text, not a list, for PostgreSQL too: psycopg adapts a list element by element (1,600
    ids: ~3 ms a query), while the server parses the literal in microseconds."""
    values = list(map(int, ids))  # ints, not rows or numpy scalars: neither JSON nor the literal take those
    if dialect.name == "postgresql":
        return "{" + ",".join(map(str, values)) + "}"
    return json.dumps(values)
