"""Prometheus text exposition (format 0.0.4) of a few counters and gauges, written by hand.

Pure formatting: callers collect the values. Shared by the gateway and HQ /metrics endpoints.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field


@dataclass(frozen=True, slots=True)
class Metric:
    name: str
    kind: str  # "counter" | "gauge"
    help: str
    samples: Mapping[tuple[tuple[str, str], ...], float] = field(default_factory=dict)

    @classmethod
    def single(cls, name: str, kind: str, help: str, value: float) -> Metric:
        return cls(name, kind, help, {(): value})


def _escape_label(value: str) -> str:
    return value.replace("\\", r"\\").replace("\n", r"\n").replace('"', r"\"")


def _number(value: float) -> str:
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    if float(value).is_integer():
        return str(int(value))
    return repr(float(value))


def render(metrics: Iterable[Metric]) -> str:
    lines: list[str] = []
    for m in metrics:
        lines.append(f"# HELP {m.name} {m.help}")
        lines.append(f"# TYPE {m.name} {m.kind}")
        for labels, value in m.samples.items():
            label_text = ",".join(f'{k}="{_escape_label(v)}"' for k, v in labels)
            lines.append(f"{m.name}{{{label_text}}} {_number(value)}" if label_text else f"{m.name} {_number(value)}")
    return "\n".join(lines) + "\n"
