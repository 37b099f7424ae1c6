"""Running one benchmark on each of HQ's databases: a throw-away SQLite file and a throw-away PostgreSQL server.

A helper for the benchmark modules, not a benchmark.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from pathlib import Path

from tests.support.postgres import Postgres


def on_each_database(run: Callable[[str, str], float], only: str = "") -> float:
    """`run(url, label)` on SQLite then PostgreSQL (`only`: "sqlite" or "postgres"); the first one's figure,
    SQLite's when both ran (HQ's default database)."""
    figures: list[float] = []
    if only in ("", "sqlite"):
        with tempfile.TemporaryDirectory() as tmp:
            figures.append(run(f"sqlite:///{Path(tmp) / 'hq.db'}", "sqlite"))
    if only in ("", "postgres"):
        with Postgres() as pg:
            figures.append(run(pg.url, "postgres"))
    if not figures:
        raise SystemExit(f"unknown database {only!r}: expected sqlite or postgres")
    return figures[0]


def load_line(name: str) -> str:
    """How busy the machine is: a shared machine's neighbours show in wall-clock times."""
    return f"{name}: {os.getloadavg()[0]:.1f} runnable ({os.cpu_count()} cores)"
