"""Media timestamps the viewers can rely on: one clock per kind of media, whatever the source did. Pure.

Sources restart their timestamps (a camera reconnects, a file loops), and a viewer switched from a camera's
main stream to its substream must not see time run backwards. Every source's timestamps are therefore mapped
onto the gateway's monotonic clock: kept as the source gives them while they run smoothly, re-anchored to
"now" when they jump. Not a jitter buffer: the receivers have their own.
"""

from __future__ import annotations

from fractions import Fraction

VIDEO_CLOCK = 90_000
AUDIO_CLOCK = 48_000
MAX_STEP_S = 2.0  # a source step larger than this (or backwards) is a discontinuity
MAX_DRIFT_S = 1.0  # a source drifting this far from the gateway's clock is re-anchored


class TimestampMapper:
    """Maps one source's timestamps (seconds, or None when it has none) to ticks of `clock_rate`."""

    def __init__(self, clock_rate: int) -> None:
        self.clock_rate = clock_rate
        self.time_base = Fraction(1, clock_rate)
        self.rebases = 0
        self._src_base: float | None = None
        self._out_base_s = 0.0
        self._last_src: float | None = None
        self._last_out = -1

    def map(self, src_s: float | None, now_s: float) -> int:
        """The output timestamp for a unit the source stamped `src_s`, arriving at gateway time `now_s`."""
        if src_s is None:
            out = round(now_s * self.clock_rate)
        else:
            if (self._src_base is None or self._last_src is None or src_s < self._last_src
                    or src_s - self._last_src > MAX_STEP_S
                    or abs(self._out_base_s + (src_s - self._src_base) - now_s) > MAX_DRIFT_S):
                if self._src_base is not None:
                    self.rebases += 1
                self._src_base, self._out_base_s = src_s, now_s
            self._last_src = src_s
            out = round((self._out_base_s + (src_s - self._src_base)) * self.clock_rate)
        # Never backwards, never twice the same: an RTP receiver would take it for a repeat.
        out = max(out, self._last_out + 1)
        self._last_out = out
        return out
