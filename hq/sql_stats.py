"""Medians and percentiles per group as SQL that SQLite and PostgreSQL both run (SQLite has no percentile
aggregate), so that a year of consultations is summarised in the database, not in Python.

The values are whole numbers (seconds, as HQ reports times): they are counted per group and distinct value,
and the percentiles read off the running counts. That is exact for whole-number values and far cheaper than
ranking every row (a year of consultations is 200,000 rows but a few thousand distinct (group, second) pairs).
Definitions: the median is the mean of the middle value or two; any other percentile is the nearest rank (the
smallest value with at least that share of the values at or below it). Builds statements only.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa


def whole_seconds(later_ms: sa.ColumnElement[Any], earlier_ms: sa.ColumnElement[Any]) -> sa.ColumnElement[Any]:
    """later - earlier in whole seconds, half a second up (integer arithmetic: the same in both databases)."""
    return (later_ms - earlier_ms + 500) // 1000


def percentiles_by_group(source: sa.Subquery | sa.CTE, group_by: Sequence[str], value: str,
                         percents: Sequence[int]) -> sa.Select[Any]:
    """SELECT the group columns and `p50`, `p90`, ... of `source`'s non-null whole-number `value`s per group."""
    for p in percents:
        if not 0 < p < 100:
            raise ValueError(f"percent {p} must be within 1..99")
    groups = [source.c[name] for name in group_by]
    v = source.c[value]
    counted = (sa.select(*groups, v.label("v"), sa.func.count().label("c")).where(v.is_not(None))
               .group_by(*groups, v).subquery("counted"))
    keys = [counted.c[name] for name in group_by]
    partition = keys or None
    # Both sums over one window ordering (the total as a frame over the whole partition): one sort, not two.
    # PostgreSQL sums bigints as numeric, and numeric / 2 is not integer division: cast back.
    cum = sa.func.sum(counted.c.c).over(partition_by=partition, order_by=counted.c.v)
    total = sa.func.sum(counted.c.c).over(partition_by=partition, order_by=counted.c.v, rows=(None, None))
    running = sa.select(*keys, counted.c.v, counted.c.c, sa.cast(cum, sa.BigInteger).label("cum"),
                        sa.cast(total, sa.BigInteger).label("n")).subquery("running")
    cum_c, n, rv, c = running.c.cum, running.c.n, running.c.v, running.c.c

    def ranks(p: int) -> list[sa.ColumnElement[Any]]:
        # (n+1)/2 and (n+2)/2 in integers: the middle rank twice (odd n) or the middle two (even n);
        # otherwise ceil(p*n/100), the nearest rank.
        return [(n + 1) // 2, (n + 2) // 2] if p == 50 else [(n * p + 99) // 100]

    def value_at(rank: sa.ColumnElement[Any]) -> sa.ColumnElement[Any]:
        # The rank-th smallest value: the first distinct value whose running count reaches the rank.
        return sa.func.min(sa.case((cum_c >= rank, rv)))

    columns: list[sa.Label[Any]] = []
    for p in percents:
        at = [value_at(r) for r in ranks(p)]
        columns.append(((at[0] + at[1]) / 2.0).label("p50") if p == 50 else at[0].label(f"p{p}"))
    # Only the rows where the running count crosses a wanted rank matter: a few per group instead of every
    # distinct value, so the grouping below sorts almost nothing.
    crossing = sa.or_(*[sa.and_(cum_c - c < r, cum_c >= r) for p in percents for r in ranks(p)])
    names = [running.c[name] for name in group_by]
    return sa.select(*names, *columns).where(crossing).group_by(*names)
