"""Why an expert's directory entry needs a coordinator's review: not updated or not used for six months (each
clock restarts when a coordinator confirms the entry), a credential expired or about to, no credential on file.

Pure: the directory's SQL filter (`hq.experts`) asks the same questions of the database; a test holds the two
to the same answers.
"""

from __future__ import annotations

import calendar
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta

STALE_AFTER_MONTHS = 6
EXPIRING_WITHIN_DAYS = 30
DAY_MS = 86_400_000


@dataclass(frozen=True, slots=True)
class ReviewFlag:
    code: str  # not_updated | not_used | credential_expired | credential_expiring | no_credentials
    text: str


@dataclass(frozen=True, slots=True)
class ReviewState:
    created_ms: int
    profile_updated_ms: int
    reviewed_ms: int | None
    last_consultation_ms: int | None
    credentials_expire_on: date | None  # the earliest expiry among the credentials
    credentials: int  # how many are on file


def months_before(now_ms: int, months: int) -> int:
    """The same moment `months` calendar months earlier (UTC), the day clamped to the month's length."""
    t = datetime.fromtimestamp(now_ms / 1000, UTC)
    month0 = t.year * 12 + t.month - 1 - months
    year, month = divmod(month0, 12)
    day = min(t.day, calendar.monthrange(year, month + 1)[1])
    return int(t.replace(year=year, month=month + 1, day=day).timestamp() * 1000)


def utc_day(now_ms: int) -> date:
    return datetime.fromtimestamp(now_ms / 1000, UTC).date()


def day_end_ms(day: date) -> int:
    """The first instant after `day` (UTC): a credential valid through `day` expires then."""
    return int(datetime(day.year, day.month, day.day, tzinfo=UTC).timestamp() * 1000) + DAY_MS


def review_flags(state: ReviewState, now_ms: int, *, months: int = STALE_AFTER_MONTHS,
                 expiring_days: int = EXPIRING_WITHIN_DAYS) -> list[ReviewFlag]:
    cutoff = months_before(now_ms, months)
    reviewed = state.reviewed_ms or 0
    flags: list[ReviewFlag] = []
    if max(state.profile_updated_ms, reviewed) < cutoff:
        flags.append(ReviewFlag("not_updated", f"profile not updated or confirmed for {months} months"))
    if max(state.last_consultation_ms or state.created_ms, reviewed) < cutoff:
        what = "no consultation" if state.last_consultation_ms is None else "no consultation since"
        flags.append(ReviewFlag("not_used", f"{what} in {months} months" if state.last_consultation_ms is None
                                else f"{what} {utc_day(state.last_consultation_ms).isoformat()}"))
    today = utc_day(now_ms)
    if state.credentials == 0:
        flags.append(ReviewFlag("no_credentials", "no credential on file"))
    elif state.credentials_expire_on is not None:
        if state.credentials_expire_on < today:
            flags.append(ReviewFlag("credential_expired", f"a credential expired on {state.credentials_expire_on}"
                                                          " (not matched to consultations until renewed)"))
        elif state.credentials_expire_on <= today + timedelta(days=expiring_days):
            flags.append(ReviewFlag("credential_expiring", f"a credential expires on {state.credentials_expire_on}"))
    return flags
