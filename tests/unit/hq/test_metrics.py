"""The metrics' pure parts: query parameters, the zone's offsets over a window (daylight saving found to the
minute), the heat map's levels."""

from __future__ import annotations

import zoneinfo
from datetime import UTC, datetime

import pytest

from hq import metrics
from hq.query_params import ParamError

NOW = int(datetime(2026, 6, 30, 12, tzinfo=UTC).timestamp() * 1000)


def ms(*args: int) -> int:
    return int(datetime(*args, tzinfo=UTC).timestamp() * 1000)  # type: ignore[misc]


def test_defaults_and_dates_in_the_zone() -> None:
    q = metrics.parse_query({}, now_ms=NOW, default_zone="Asia/Shanghai")
    assert (q.until_ms - q.since_ms, q.by, q.time_zone) == (30 * metrics.DAY_MS, "none", "Asia/Shanghai")
    q = metrics.parse_query({"since": "2026-01-01", "until": "2026-01-31", "by": "hour"}, now_ms=NOW,
                            default_zone="Asia/Shanghai")
    assert q.since_ms == ms(2025, 12, 31, 16) and q.until_ms == ms(2026, 1, 31, 16)  # local days, until inclusive
    q = metrics.parse_query({"since": "2026-01-01T00:00:00Z", "until": "2026-01-02T00:00:00Z", "tz": "UTC"},
                            now_ms=NOW, default_zone="Asia/Shanghai")
    assert (q.since_ms, q.until_ms, q.time_zone) == (ms(2026, 1, 1), ms(2026, 1, 2), "UTC")


@pytest.mark.parametrize(("params", "parameter"), [
    ({"by": "colour"}, "by"), ({"kind": "sometimes"}, "kind"), ({"tz": "Mars/Olympus"}, "tz"),
    ({"since": "yesterday"}, "since"), ({"since": "2026-02-01", "until": "2026-01-01"}, "until"),
    ({"since": "2020-01-01"}, "since"), ({"expert_id": "x"}, "expert_id"), ({"bogus": "1"}, "bogus")])
def test_bad_parameters_name_themselves(params: dict[str, str], parameter: str) -> None:
    with pytest.raises(ParamError) as caught:
        metrics.parse_query(params, now_ms=NOW, default_zone="UTC")
    assert caught.value.parameter == parameter and caught.value.expected


def test_offsets_follow_daylight_saving_to_the_minute() -> None:
    berlin = zoneinfo.ZoneInfo("Europe/Berlin")
    changes = metrics.offsets(berlin, ms(2026, 1, 1), ms(2027, 1, 1))
    assert changes == [(ms(2026, 1, 1), 3_600_000), (ms(2026, 3, 29, 1), 7_200_000),
                       (ms(2026, 10, 25, 1), 3_600_000)]
    assert metrics.offsets(zoneinfo.ZoneInfo("Asia/Shanghai"), ms(2026, 1, 1), ms(2027, 1, 1)) == [
        (ms(2026, 1, 1), 8 * 3_600_000)]
    # A zone that moves by half an hour (Lord Howe Island) is found to the minute, too.
    howe = metrics.offsets(zoneinfo.ZoneInfo("Australia/Lord_Howe"), ms(2026, 1, 1), ms(2027, 1, 1))
    assert [o for _, o in howe] == [39_600_000, 37_800_000, 39_600_000]
    assert howe[1][0] == ms(2026, 4, 4, 15)  # 02:00 at +11:00 becomes 01:30 at +10:30


def test_heat_levels() -> None:
    assert metrics.scaled([[0, 1, 5, 10]]) == [[0, 1, 4, 9]]
    assert metrics.scaled([[0, 0]]) == [[0, 0]]
