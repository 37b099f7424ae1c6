"""Which video tier one viewer's link can carry: the camera's own stream ("main"), its low-rate copy ("low"),
or none ("off", voice only). Pure: fed link reports and the time, no I/O.

The gateway relays camera video without re-encoding it per viewer, so it cannot tune a bitrate per viewer;
it switches a viewer between streams that already exist (at their next keyframe). Voice is never switched off:
cutting video is how audio keeps priority on a link that cannot carry both.
"""

from __future__ import annotations

import collections
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

TIERS = ("main", "low", "off")


@dataclass(frozen=True, slots=True)
class LinkReport:
    """What one viewer's receiver reports (RTCP) over the last interval."""

    loss_fraction: float | None = None  # 0..1, the worst of the viewer's streams (RTCP receiver reports)
    remb_kbps: float | None = None  # the receiver's own bandwidth estimate (REMB), if it sends one
    rtt_ms: float | None = None


@dataclass(frozen=True, slots=True)
class TierPolicy:
    headroom: float = 0.85  # a tier fits if its bitrate is below this share of the link's estimate
    loss_high: float = 0.10  # above: the link is congested
    loss_severe: float = 0.25  # above: step down at once, without waiting for a second report
    loss_ok: float = 0.02  # below: the link is clean (a probe up may start)
    bad_reports_to_step_down: int = 2  # reports of loss above loss_high in a row
    low_estimate_reports_to_step_down: int = 3  # reports of a receiver estimate below the tier's bitrate in a row
    startup_grace_s: float = 10.0  # a receiver's estimator starts low and takes a while to measure the link
    estimate_drop: float = 0.95  # a receiver estimate below this share of its recent peak has fallen
    probe_after_s: float = 10.0  # time in a lower tier with a clean link before trying the next one up
    probe_max_s: float = 120.0  # the wait doubles after each failed probe, up to this
    probe_grace_s: float = 5.0  # a receiver's estimate needs this long to catch up with a probe: loss alone judges
    probe_holds_s: float = 20.0  # a probe that lasted this long succeeded: the wait starts from the minimum again


class TierController:
    """One viewer's tier, from its link reports. `update` returns the tier to send from now on.

    Down: on severe loss at once, on loss for two reports, or for three reports of some loss with a receiver
    estimate (REMB) fallen below the tier's bitrate; to the best lower tier that fits what got through.
    Up: a probe one tier up after a clean wait (doubling after each failed probe), or sooner when the
    receiver's estimate says the next tier fits.
    """

    def __init__(self, policy: TierPolicy | None = None, *, tiers: Sequence[str] = TIERS, start: str = "main",
                 now_s: float = 0.0) -> None:
        if start not in tiers or tiers[-1] != "off":
            raise ValueError(f"start tier {start!r} must be one of {list(tiers)}, and the last tier must be 'off'")
        self.policy = policy or TierPolicy()
        self.tiers = tuple(tiers)
        self.tier = start
        self.estimate_kbps: float | None = None  # what the link carries, from the last report
        self._bad = 0
        self._low_estimates = 0
        self._recent_rembs: collections.deque[float] = collections.deque(maxlen=8)
        self._started_s = now_s
        self._since_s = now_s  # when the current tier began
        self._probe_wait_s = self.policy.probe_after_s
        self._probing = False

    def update(self, report: LinkReport, tier_kbps: Mapping[str, float], now_s: float) -> str:
        """`tier_kbps`: each tier's current bitrate (measured at its source); 'off' needs no entry."""
        p = self.policy
        loss = report.loss_fraction or 0.0
        sent = tier_kbps.get(self.tier, 0.0)
        settling = (now_s - self._started_s < p.startup_grace_s
                    or (self._probing and now_s - self._since_s < p.probe_grace_s))
        remb = None if settling else report.remb_kbps
        got_through = sent * (1 - loss) if loss >= p.loss_high and sent > 0 else None
        known = [e for e in (got_through, remb) if e is not None]
        self.estimate_kbps = min(known) if known else None
        if loss >= p.loss_severe:
            return self._step_down(now_s, tier_kbps)
        self._bad = self._bad + 1 if loss >= p.loss_high else 0
        # A receiver's estimator ramps up slowly from a low start: only an estimate that fell (it detected
        # queueing on the link) says the link is short, not one still climbing towards what is sent. And only
        # with some loss beside it: delay alone is also what a busy CPU at either end looks like, and switching
        # a viewer's stream on a hiccup costs a visible step in the picture.
        fell = remb is not None and bool(self._recent_rembs) and remb < max(self._recent_rembs) * p.estimate_drop
        if remb is not None:
            self._recent_rembs.append(remb)
        short = fell and loss >= p.loss_ok and not self._fits(self.tier, tier_kbps, remb)
        self._low_estimates = self._low_estimates + 1 if short else 0
        if self._bad >= p.bad_reports_to_step_down or self._low_estimates >= p.low_estimate_reports_to_step_down:
            return self._step_down(now_s, tier_kbps)
        if self._bad or self._low_estimates:
            return self.tier
        if self._probing and now_s - self._since_s >= p.probe_holds_s:
            self._probing = False
            self._probe_wait_s = p.probe_after_s
        index = self.tiers.index(self.tier)
        if index > 0 and loss < p.loss_ok:
            up = self.tiers[index - 1]
            if now_s - self._since_s >= self._probe_wait_s or (remb is not None and self._fits(up, tier_kbps, remb)):
                self._switch(up, now_s, probing=True)
        return self.tier

    def _fits(self, tier: str, tier_kbps: Mapping[str, float], estimate_kbps: float | None) -> bool:
        if tier == "off" or estimate_kbps is None:
            return True
        return tier_kbps.get(tier, 0.0) <= estimate_kbps * self.policy.headroom

    def _step_down(self, now_s: float, tier_kbps: Mapping[str, float]) -> str:
        index = self.tiers.index(self.tier)
        self._bad = 0
        if index == len(self.tiers) - 1:
            return self.tier
        if self._probing:
            # The probe failed: back down, and wait longer before the next one.
            self._probe_wait_s = min(self._probe_wait_s * 2, self.policy.probe_max_s)
        target = index + 1
        while target < len(self.tiers) - 1 and not self._fits(self.tiers[target], tier_kbps, self.estimate_kbps):
            target += 1
        self._switch(self.tiers[target], now_s, probing=False)
        return self.tier

    def _switch(self, tier: str, now_s: float, *, probing: bool) -> None:
        self.tier = tier
        self._since_s = now_s
        self._bad = self._low_estimates = 0
        self._probing = probing
