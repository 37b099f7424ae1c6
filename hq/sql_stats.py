"""Medians and percentiles per group as SQL that SQLite and PostgreSQL both run (window functions; SQLite has
no percentile aggregate), so that a year of consultations is summarised in the database, not in Python.

Builds statements only; the capability figures (`hq.capability`) and the metrics (`hq.metrics`) run them.
Definitions: the median is the mean of the middle value or two; any other percentile is the nearest rank
(the smallest value with at least that share of the values at or below it).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa


def percentiles_by_group(source: sa.Subquery, group_by: Sequence[str], value: str,
                         percents: Sequence[int]) -> sa.Select[Any]:
    """SELECT the group columns and one column per percent ("p50", "p90", ...) over `source`'s non-null
    `value`s. p50 is the median (mean of the middle two for an even count)."""
    for p in percents:
        if not 0 < p < 100:
            raise ValueError(f"percent {p} must be within 1..99")
    groups = [source.c[name] for name in group_by]
    v = source.c[value]
    partition = groups or None  # no groups: one over everything
    ranked = (sa.select(*groups, v.label("v"),
                        sa.func.row_number().over(partition_by=partition, order_by=v).label("rn"),
                        sa.func.count().over(partition_by=partition).label("n"))
              .where(v.is_not(None)).subquery("ranked"))
    rn, n, rv = ranked.c.rn, ranked.c.n, ranked.c.v
    columns: list[Any] = []
    for p in percents:
        if p == 50:
            # Integer division: (n+1)/2 and (n+2)/2 are the middle rank twice (odd n) or the middle two (even n).
            middle = sa.or_(rn == (n + 1) // 2, rn == (n + 2) // 2)
            columns.append(sa.func.avg(sa.case((middle, rv))).label("p50"))
        else:
            # Nearest rank: the first rank r with r >= p% of n, i.e. ceil(p*n/100) in integers.
            columns.append(sa.func.min(sa.case((rn >= (n * p + 99) // 100, rv))).label(f"p{p}"))
    names = [ranked.c[name] for name in group_by]
    return sa.select(*names, *columns).group_by(*names)
