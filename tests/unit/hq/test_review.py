"""Review flags: six calendar months without an update or a consultation (a coordinator's confirmation restarts
both), credentials expired, expiring within 30 days, or none on file."""

from __future__ import annotations

from datetime import UTC, date, datetime

from hq.review import ReviewState, day_end_ms, months_before, review_flags, utc_day


def ms(*args: int) -> int:
    return int(datetime(*args, tzinfo=UTC).timestamp() * 1000)  # type: ignore[misc]


NOW = ms(2026, 8, 31, 12)


def state(**kw: object) -> ReviewState:
    base: dict[str, object] = {"created_ms": ms(2026, 6, 1), "profile_updated_ms": ms(2026, 6, 1),
                               "reviewed_ms": None, "last_consultation_ms": ms(2026, 8, 1),
                               "credentials_expire_on": date(2028, 1, 1), "credentials": 1}
    return ReviewState(**{**base, **kw})  # type: ignore[arg-type]


def codes(s: ReviewState, now: int = NOW) -> list[str]:
    return [f.code for f in review_flags(s, now)]


def test_six_calendar_months_clamped_to_the_month_end() -> None:
    assert months_before(ms(2026, 8, 31, 12), 6) == ms(2026, 2, 28, 12)
    assert months_before(ms(2028, 8, 31), 6) == ms(2028, 2, 29)  # leap year
    assert months_before(ms(2026, 3, 15), 6) == ms(2025, 9, 15)  # across the year
    assert utc_day(ms(2026, 1, 1, 23, 59)) == date(2026, 1, 1)
    assert day_end_ms(date(2026, 1, 1)) == ms(2026, 1, 2)


def test_a_fresh_used_credentialed_profile_needs_no_review() -> None:
    assert codes(state()) == []


def test_not_updated_for_six_months() -> None:
    assert codes(state(profile_updated_ms=ms(2026, 2, 28, 11))) == ["not_updated"]
    assert codes(state(profile_updated_ms=ms(2026, 2, 28, 12))) == []  # exactly six months: not yet


def test_not_used_for_six_months_or_never_since_joining() -> None:
    flags = review_flags(state(last_consultation_ms=ms(2026, 1, 10)), NOW)
    assert [(f.code, f.text) for f in flags] == [("not_used", "no consultation since 2026-01-10")]
    assert codes(state(last_consultation_ms=None, created_ms=ms(2025, 1, 1), profile_updated_ms=NOW)) == ["not_used"]
    assert codes(state(last_consultation_ms=None, created_ms=ms(2026, 7, 1))) == []  # new: not yet


def test_a_coordinators_confirmation_restarts_both_clocks() -> None:
    old = state(profile_updated_ms=ms(2025, 1, 1), created_ms=ms(2025, 1, 1), last_consultation_ms=None)
    assert codes(old) == ["not_updated", "not_used"]
    assert codes(state(profile_updated_ms=ms(2025, 1, 1), created_ms=ms(2025, 1, 1), last_consultation_ms=None,
                       reviewed_ms=ms(2026, 5, 1))) == []


def test_credentials_expired_expiring_or_missing() -> None:
    assert codes(state(credentials_expire_on=date(2026, 8, 30))) == ["credential_expired"]
    assert codes(state(credentials_expire_on=date(2026, 8, 31))) == ["credential_expiring"]  # valid today
    assert codes(state(credentials_expire_on=date(2026, 9, 30))) == ["credential_expiring"]
    assert codes(state(credentials_expire_on=date(2026, 10, 1))) == []
    assert codes(state(credentials_expire_on=None)) == []  # none of them expires
    assert codes(state(credentials_expire_on=None, credentials=0)) == ["no_credentials"]
