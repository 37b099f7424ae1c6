"""Prometheus text exposition (format 0.0.4) written by hand: counters, gauges and histograms.

Pure formatting and a small histogram accumulator, shared by the gateway's and HQ's /metrics;
callers collect the values.
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

Labels = tuple[tuple[str, str], ...]


@dataclass(frozen=True, slots=True)
class Family:
    """One metric family; `samples` maps label sets to values (histograms use `histogram` instead)."""

    name: str
    kind: str  # "counter" | "gauge" | "histogram"
    help: str
    samples: Mapping[Labels, float] = field(default_factory=dict)
    histogram: Histogram | None = None

    @classmethod
    def single(cls, name: str, kind: str, help: str, value: float) -> Family:
        return cls(name, kind, help, {(): value})


class Histogram:
    """Cumulative buckets with fixed upper bounds, as Prometheus wants them."""

    def __init__(self, bounds: Sequence[float]) -> None:
        if list(bounds) != sorted(set(bounds)):
            raise ValueError("histogram bounds must be strictly increasing")
        self.bounds = tuple(bounds)
        self._counts = [0] * (len(self.bounds) + 1)
        self.count = 0
        self.sum = 0.0

    def observe(self, value: float, times: int = 1) -> None:
        self._counts[bisect.bisect_left(self.bounds, value)] += times
        self.count += times
        self.sum += value * times

    def cumulative(self) -> list[tuple[float, int]]:
        out, running = [], 0
        for bound, n in zip((*self.bounds, math.inf), self._counts, strict=True):
            running += n
            out.append((bound, running))
        return out


def escape_label(value: str) -> str:
    return value.replace("\\", r"\\").replace("\n", r"\n").replace('"', r"\"")


def format_number(value: float) -> str:
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    if float(value).is_integer():
        return str(int(value))
    return repr(float(value))


def _labels(labels: Labels) -> str:
    if not labels:
        return ""
    return "{" + ",".join(f'{k}="{escape_label(v)}"' for k, v in labels) + "}"


def render(families: Iterable[Family]) -> str:
    lines: list[str] = []
    for f in families:
        help_text = f.help.replace("\\", r"\\").replace("\n", r"\n")
        lines.append(f"# HELP {f.name} {help_text}")
        lines.append(f"# TYPE {f.name} {f.kind}")
        if f.histogram is not None:
            for bound, n in f.histogram.cumulative():
                lines.append(f'{f.name}_bucket{{le="{format_number(bound)}"}} {n}')
            lines.append(f"{f.name}_sum {format_number(f.histogram.sum)}")
            lines.append(f"{f.name}_count {f.histogram.count}")
            continue
        for labels, value in f.samples.items():
            lines.append(f"{f.name}{_labels(labels)} {format_number(value)}")
    return "\n".join(lines) + "\n"
