"""`hq.presence.expires`: windows computed together are renewed spread over hours, each expert's at its own
time."""

from __future__ import annotations

from hq import presence


def test_windows_computed_together_expire_spread_over_hours() -> None:
    ends = sorted(presence.expires(expert_id, 0) for expert_id in range(1, 10_001))
    assert ends[0] > presence.HORIZON_MS - presence.SPREAD_MS and ends[-1] <= presence.HORIZON_MS
    hours = {end // 3_600_000 for end in ends}
    assert len(hours) == presence.SPREAD_MS // 3_600_000  # every hour of the spread has some
    assert max(sum(1 for e in ends if e // 3_600_000 == h) for h in hours) < 2_000  # and none most of them
