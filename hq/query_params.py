"""Parsing and validating the JSON API's query parameters: pure, so every rule is unit-tested.

Errors are `ParamError`s naming the parameter and what was expected; `hq.api` turns them into 400s.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime

from gateway import wire
from hq.clock import ms_from_datetime

DEFAULT_LIMIT = 1000
MAX_LIMIT = 10_000
ISO_EXPECTED = "ISO 8601 date-time with a UTC offset, e.g. 2025-01-31T08:00:00Z or 2025-01-31T16:00:00+08:00"


class ParamError(ValueError):
    def __init__(self, parameter: str, message: str, expected: str) -> None:
        self.parameter = parameter
        self.message = message
        self.expected = expected
        super().__init__(f"{parameter}: {message}; expected {expected}")

    def to_json(self) -> dict[str, str]:
        return {"error": self.message, "parameter": self.parameter, "expected": self.expected}


class Order(enum.StrEnum):
    ASC = "asc"
    DESC = "desc"


@dataclass(frozen=True, slots=True)
class ObservationQuery:
    gateway_id: str | None = None
    clinic_id: str | None = None
    patient_id: str | None = None
    metric: str | None = None
    kind: str | None = None
    since_ms: int | None = None
    until_ms: int | None = None
    limit: int = DEFAULT_LIMIT
    order: Order = Order.DESC


OBSERVATION_PARAMETERS = ("gateway_id", "clinic_id", "patient_id", "metric", "kind", "since", "until", "limit", "order")


def parse_observation_query(params: Mapping[str, str]) -> ObservationQuery:
    for name in params:
        if name not in OBSERVATION_PARAMETERS:
            raise ParamError(name, f"unknown parameter {name!r}", "one of " + ", ".join(OBSERVATION_PARAMETERS))
    kind = _text(params, "kind")
    if kind is not None and kind not in wire.KINDS:
        raise ParamError("kind", f"unknown kind {kind!r}", "one of " + ", ".join(sorted(wire.KINDS)))
    since_ms = parse_instant(params, "since")
    until_ms = parse_instant(params, "until")
    if since_ms is not None and until_ms is not None and until_ms < since_ms:
        raise ParamError("until", "until is before since", "a time at or after since")
    order_text = params.get("order", Order.DESC.value)
    try:
        order = Order(order_text)
    except ValueError:
        raise ParamError("order", f"unknown order {order_text!r}", "asc or desc") from None
    return ObservationQuery(
        gateway_id=_text(params, "gateway_id"), clinic_id=_text(params, "clinic_id"),
        patient_id=_text(params, "patient_id"),
        metric=_text(params, "metric"), kind=kind, since_ms=since_ms, until_ms=until_ms,
        limit=parse_limit(params), order=order,
    )


def parse_instant(params: Mapping[str, str], name: str) -> int | None:
    """An ISO 8601 date-time with an offset, as Unix ms; dates alone, epochs and naive times are refused."""
    text = params.get(name)
    if text is None:
        return None
    if "T" not in text.upper():
        raise ParamError(name, f"{text!r} is not an ISO 8601 date-time", ISO_EXPECTED)
    try:
        t = datetime.fromisoformat(text[:-1] + "+00:00" if text.endswith(("Z", "z")) else text)
    except ValueError:
        raise ParamError(name, f"{text!r} is not an ISO 8601 date-time", ISO_EXPECTED) from None
    if t.tzinfo is None:
        raise ParamError(name, f"{text!r} has no UTC offset", ISO_EXPECTED)
    return ms_from_datetime(t)


def parse_limit(params: Mapping[str, str]) -> int:
    text = params.get("limit")
    if text is None:
        return DEFAULT_LIMIT
    expected = f"an integer from 1 to {MAX_LIMIT}"
    if not text.isascii() or not text.isdigit():
        raise ParamError("limit", f"{text!r} is not an integer", expected)
    value = int(text)
    if not 1 <= value <= MAX_LIMIT:
        raise ParamError("limit", f"{value} is out of range", expected)
    return value


def _text(params: Mapping[str, str], name: str) -> str | None:
    value = params.get(name)
    if value is None:
        return None
    if not value or len(value) > 200:
        raise ParamError(name, "empty or longer than 200 characters", "a non-empty identifier")
    return value
