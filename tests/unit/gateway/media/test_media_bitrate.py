"""A viewer's video tier follows its link: down on loss or a low receiver estimate, up again by probing, with
the wait doubling after a failed probe; voice-only ("off") when even the low-rate copy does not fit."""

from __future__ import annotations

from gateway.media.bitrate import LinkReport, TierController, TierPolicy

RATES = {"main": 2000.0, "low": 350.0}
CLEAN = LinkReport(loss_fraction=0.0)


def run(controller: TierController, reports: list[LinkReport], start_s: float = 0.0, step_s: float = 1.0) -> list[str]:
    return [controller.update(r, RATES, start_s + i * step_s) for i, r in enumerate(reports)]


def settled(policy: TierPolicy | None = None) -> TierController:
    """A controller past its start-up grace (receiver estimates count from then on)."""
    return TierController(policy, now_s=-100)


def test_a_clean_link_keeps_the_main_stream() -> None:
    c = TierController()
    assert set(run(c, [CLEAN] * 60)) == {"main"}


def test_sustained_loss_steps_down_after_two_reports_not_one() -> None:
    c = TierController()
    tiers = run(c, [LinkReport(0.12), CLEAN, LinkReport(0.12), LinkReport(0.12)])
    assert tiers == ["main", "main", "main", "low"]


def test_severe_loss_steps_down_at_once_to_what_got_through() -> None:
    c = TierController()
    assert c.update(LinkReport(0.6), RATES, 0) == "low"  # 800 kbps got through: the low copy fits
    assert c.update(LinkReport(0.7), RATES, 1) == "off"  # 105 kbps of the low copy: voice only
    c = settled()
    # A receiver estimate that falls below the low copy's bitrate leaves no video tier that fits.
    falling = [LinkReport(0.03, remb_kbps=k) for k in (3000, 250, 220, 200)]
    assert run(c, falling) == ["main", "main", "main", "off"]


def test_a_falling_receiver_estimate_picks_the_low_copy() -> None:
    c = settled()
    falling = [LinkReport(0.03, remb_kbps=k) for k in (2600, 1000, 950, 900)]
    assert run(c, falling) == ["main", "main", "main", "low"]


def test_a_fallen_estimate_without_loss_is_not_enough() -> None:
    # Delay alone (a busy CPU at either end looks the same) does not switch the viewer's stream.
    c = settled()
    assert set(run(c, [LinkReport(0.0, remb_kbps=k) for k in (2600, 1000, 950, 900, 850)])) == {"main"}


def test_a_receiver_estimate_still_climbing_is_not_a_short_link() -> None:
    c = TierController(TierPolicy(startup_grace_s=10))
    assert set(run(c, [LinkReport(0.0, remb_kbps=300)] * 10)) == {"main"}  # the estimator starting up
    climbing = [LinkReport(0.0, remb_kbps=300 * 1.08**i) for i in range(20)]
    assert set(run(c, climbing, start_s=10)) == {"main"}


def test_probing_goes_back_up_and_a_failed_probe_doubles_the_wait() -> None:
    policy = TierPolicy(probe_after_s=10, probe_max_s=40, probe_holds_s=20)
    c = TierController(policy)
    run(c, [LinkReport(0.3)])  # t=0: down to low
    assert c.tier == "low"
    tiers = run(c, [CLEAN] * 10, start_s=1)  # t=1..10: the probe fires at t=10
    assert tiers[-1] == "main"
    run(c, [LinkReport(0.3)], start_s=11)  # the probe fails
    assert c.tier == "low"
    tiers = run(c, [CLEAN] * 25, start_s=12)  # now it waits 20 s: up at t=31, not at t=21
    assert tiers.index("main") == 31 - 12


def test_a_probe_that_holds_resets_the_wait() -> None:
    c = TierController(TierPolicy(probe_after_s=5, probe_holds_s=10))
    run(c, [LinkReport(0.3)])
    run(c, [CLEAN] * 5, start_s=1)  # up at t=5
    assert c.tier == "main"
    run(c, [CLEAN] * 12, start_s=6)  # holds to t=17
    run(c, [LinkReport(0.3)], start_s=18)
    assert c.tier == "low"
    assert run(c, [CLEAN] * 5, start_s=19)[-1] == "main"  # the 5 s wait again, not 10


def test_during_a_probe_only_loss_judges_the_new_tier() -> None:
    # Right after a probe up, a receiver estimate still reflects the low stream: it must not end the probe.
    c = settled(TierPolicy(probe_after_s=5, probe_grace_s=5))
    run(c, [LinkReport(0.03, remb_kbps=k) for k in (3000, 500, 480, 460)])
    assert c.tier == "low"  # at t=3
    run(c, [LinkReport(0.0, remb_kbps=450)] * 5, start_s=4)  # probes at t=8
    assert c.tier == "main"
    assert run(c, [LinkReport(0.0, remb_kbps=k) for k in (600, 580, 560, 540)], start_s=9) == ["main"] * 4


def test_voice_only_recovers_to_video_when_the_link_clears() -> None:
    c = TierController(TierPolicy(probe_after_s=5, probe_holds_s=10))
    run(c, [LinkReport(0.3), LinkReport(0.9)])
    assert c.tier == "off"
    tiers = run(c, [CLEAN] * 20, start_s=2)
    assert tiers[3:5] == ["off", "low"] and tiers[-1] == "main"  # off at t=1: up at t=6, main at t=11
