"""Ranking experts for a consultation request: department and skill fit, language, availability now, load
against the daily cap and past response time, each worth points, with the reasons shown to the people involved.

Pure: no database, no clock (time is passed in). The candidates come from `hq.experts.candidates`; dispatch
rounds, acceptance and escalation are `hq.consultations`' business.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import NamedTuple

from hq.taxonomy import normalise


@dataclass(frozen=True, slots=True)
class MatchRequest:
    """What the clinic asks for. `department_id` None: any department (an emergency before its short form);
    `tags`: skills or diseases (any spelling: they are normalised); `language`: BCP 47, e.g. "zh-CN"."""

    department_id: int | None
    tags: frozenset[str] = frozenset()
    language: str | None = None
    exclude: frozenset[int] = frozenset()  # e.g. experts who already declined or were offered it before

    def __post_init__(self) -> None:
        object.__setattr__(self, "tags", frozenset(t for t in (normalise(x) for x in self.tags) if t))
        object.__setattr__(self, "exclude", frozenset(self.exclude))


class Candidate(NamedTuple):
    """One expert as matching sees them. A NamedTuple: built thousands of times per request, so it must be
    cheap to make (a frozen dataclass costs several times more per instance)."""

    expert_id: int
    department_id: int
    tags: frozenset[str]  # normalised; `hq.experts.candidates` gives the ones the request asks for
    languages: tuple[str, ...]  # BCP 47
    available_now: bool
    load_today: int  # consultations taken today
    daily_cap: int
    median_response_s: float | None  # None: no history yet
    name: str = ""
    active: bool = True
    credentials_expire_ms: int | None = None  # the earliest credential is valid until this instant; None: none


@dataclass(frozen=True, slots=True)
class Weights:
    """Points each factor is worth at best. Availability outweighs everything else: an emergency needs
    someone who can answer now; fit to the question comes next; load and speed break ties among the fitting."""

    available: float = 4.0
    department: float = 3.0
    tags: float = 3.0
    language: float = 2.0
    load: float = 1.5
    response: float = 1.5
    response_reference_s: float = 120.0  # a median response this long earns half the response points
    unknown_response: float = 0.5  # share of the response points for an expert without history

    def __post_init__(self) -> None:
        if min(self.available, self.department, self.tags, self.language, self.load, self.response) < 0:
            raise ValueError("weights must not be negative")
        if self.response_reference_s <= 0 or not 0 <= self.unknown_response <= 1:
            raise ValueError("response_reference_s must be > 0 and unknown_response within 0..1")


DEFAULT = Weights()


@dataclass(frozen=True, slots=True)
class Reason:
    factor: str  # available | department | tags | language | load | response
    points: float
    text: str

    def __str__(self) -> str:
        return f"{self.text} (+{self.points:.2f})"


class Ranked(NamedTuple):
    """One eligible expert, best first. `reasons` say where every point of `score` came from."""

    expert_id: int
    score: float
    candidate: Candidate
    request: MatchRequest
    weights: Weights = DEFAULT

    @property
    def reasons(self) -> tuple[Reason, ...]:
        # Built on demand: ranking 10,000 candidates must not write 60,000 sentences nobody reads.
        return explain(self.request, self.candidate, self.weights)

    @property
    def explanation(self) -> str:
        return "; ".join(map(str, self.reasons))


@dataclass(frozen=True, slots=True)
class Excluded:
    expert_id: int
    reason: str


def screen(request: MatchRequest, candidates: Iterable[Candidate], *, now_ms: int
           ) -> tuple[list[Candidate], list[Excluded]]:
    """(eligible, excluded with why): inactive, expired credentials, at or over the daily cap, or excluded."""
    eligible: list[Candidate] = []
    excluded: list[Excluded] = []
    exclude = request.exclude
    for c in candidates:
        if c.expert_id in exclude:
            excluded.append(Excluded(c.expert_id, "excluded by the request"))
        elif not c.active:
            excluded.append(Excluded(c.expert_id, "inactive"))
        elif c.credentials_expire_ms is not None and c.credentials_expire_ms <= now_ms:
            excluded.append(Excluded(c.expert_id, "a credential has expired"))
        elif c.load_today >= c.daily_cap:
            excluded.append(Excluded(c.expert_id, f"at the daily cap ({c.load_today} of {c.daily_cap})"))
        else:
            eligible.append(c)
    return eligible, excluded


def rank(request: MatchRequest, candidates: Iterable[Candidate], *, now_ms: int, weights: Weights = DEFAULT,
         limit: int | None = None) -> list[Ranked]:
    """The eligible candidates (see `screen`), best first (score, then lighter load, then lower id:
    deterministic). `limit`: only the best `limit` (cheaper than sorting everyone)."""
    scored = _Scorer(request, weights).scores(candidates, now_ms)
    best = heapq.nsmallest(limit, scored) if limit is not None else sorted(scored)
    return [Ranked(c.expert_id, -neg, c, request, weights) for neg, _load, _id, c in best]


def language_matches(wanted: str, spoken: Sequence[str]) -> bool:
    """Same primary language subtag: a clinic asking for zh-CN is served by an expert who speaks zh."""
    primary = wanted.split("-", 1)[0].casefold()
    return any(s.split("-", 1)[0].casefold() == primary for s in spoken)


class _Scorer:
    """The points of each factor: `parts` for the reasons, `scores` the same sums as one tight loop (ranking
    10,000 candidates is the hot path of an emergency dispatch; a test holds the two to the same numbers)."""

    __slots__ = ("language", "request", "tags", "w")

    def __init__(self, request: MatchRequest, weights: Weights) -> None:
        self.request = request
        self.w = weights
        self.tags = request.tags
        self.language = request.language

    def parts(self, c: Candidate) -> tuple[float, float, float, float, float, float]:
        w = self.w
        available = w.available if c.available_now else 0.0
        department = w.department if self.request.department_id == c.department_id else 0.0
        tags = w.tags * len(self.tags & c.tags) / len(self.tags) if self.tags else 0.0
        language = w.language if self.language is not None and language_matches(self.language, c.languages) else 0.0
        load = w.load * (1.0 - c.load_today / c.daily_cap) if 0 <= c.load_today < c.daily_cap else 0.0
        median = c.median_response_s
        ref = w.response_reference_s
        response = w.response * (w.unknown_response if median is None else ref / (ref + max(0.0, median)))
        return available, department, tags, language, load, response

    def scores(self, candidates: Iterable[Candidate], now_ms: int) -> Iterator[tuple[float, int, int, Candidate]]:
        """(-score, load, id, candidate) for each eligible candidate (`screen`'s rules, in the same pass):
        sorting them puts the best first. A generator: `rank` with a limit keeps only the best alive."""
        w, tags, department_id, language = self.w, self.tags, self.request.department_id, self.language
        exclude = self.request.exclude
        available_w, department_w, language_w, load_w = w.available, w.department, w.language, w.load
        tag_w = w.tags / len(tags) if tags else 0.0
        unknown = w.response * w.unknown_response
        ref, response_w = w.response_reference_s, w.response
        speaks: dict[tuple[str, ...], float] = {}  # few distinct language lists: decide each once
        for c in candidates:
            load, cap = c.load_today, c.daily_cap
            expires = c.credentials_expire_ms
            if load >= cap or not c.active or (expires is not None and expires <= now_ms) or c.expert_id in exclude:
                continue
            points = available_w if c.available_now else 0.0
            if c.department_id == department_id:
                points += department_w
            if tags and c.tags:
                points += tag_w * len(tags & c.tags)
            if language is not None:
                known = speaks.get(c.languages)
                if known is None:
                    known = speaks[c.languages] = language_w if language_matches(language, c.languages) else 0.0
                points += known
            if load >= 0:
                points += load_w * (1.0 - load / cap)
            median = c.median_response_s
            points += unknown if median is None else response_w * ref / (ref + (median if median > 0 else 0.0))
            yield -points, load, c.expert_id, c


def explain(request: MatchRequest, c: Candidate, weights: Weights = DEFAULT) -> tuple[Reason, ...]:
    """Why `c` scores what it does: one reason per factor that counts for this request."""
    available, department, tags, language, load, response = _Scorer(request, weights).parts(c)
    reasons = [Reason("available", available, "available now" if c.available_now else "not available now")]
    if request.department_id is not None:
        reasons.append(Reason("department", department, "in the requested department"
                              if department else "not in the requested department"))
    if request.tags:
        matched = sorted(request.tags & c.tags)
        text = f"matches {len(matched)} of {len(request.tags)} requested skills" + (
            f": {', '.join(matched)}" if matched else "")
        reasons.append(Reason("tags", tags, text))
    if request.language is not None:
        reasons.append(Reason("language", language, f"speaks {request.language}" if language
                              else f"does not list {request.language} among {', '.join(c.languages) or 'no'} "
                                   "languages"))
    reasons.append(Reason("load", load, f"{c.load_today} of {c.daily_cap} consultations today"))
    reasons.append(Reason("response", response, "no response history yet" if c.median_response_s is None
                          else f"median response {c.median_response_s:.0f} s"))
    return tuple(reasons)
