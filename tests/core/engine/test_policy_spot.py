"""Spot probes during a blackout, on trace snippets: the decision expected at each tick.

A spot resource rolled back to on-demand (``spot_blackout_period``) gets, once the blackout has run
``max(5m, regular_instance_rollback_timeout)``, one spot launch attempt per tick with demand, ahead of
the queue's on-demand resources; when it fails, the re-plan of the same tick launches on-demand;
when it succeeds, the blackout ends at once. See docs/how-it-works.md."""

from __future__ import annotations

from scaler.config.model import Config
from scaler.engine.policy import decide
from tests.core.engine.test_policy import C, R, Tick, cases, fail, obs, run_case, succeed

SPOT_A = R("a", spot=True, regular_instance_rollback_timeout="5m", spot_blackout_period="30m")
DEAR_B = R("b", price_per_hour=1.0)

# spot fails from t=1000; rolled back at 1300 (blackout until 3100)
INTO_BLACKOUT = [
    Tick(1000, {"q": 2}, launches=[("a", 2, "spot")], then=fail("capacity")),
    Tick(1000, {"q": 2}, notices=["info:queue_short"]),  # the re-plan of that tick: not retried at once
    Tick(1300, {"q": 2}, launches=[("a", 2, "on-demand")], notices=["warning:spot_rollback"], then=succeed()),
    Tick(1500, {"q": 2}, launches=[("a", 2, "on-demand")]),  # 3m20s into the blackout: no probe yet
]

CASES = [
    (
        "blackout probe fails: on-demand in the same tick, probed again next tick, the blackout unchanged",
        C(SPOT_A),
        [
            *INTO_BLACKOUT,
            Tick(1600, {"q": 2}, launches=[("a", 2, "spot")], then=fail("capacity")),  # 5m in: probe
            Tick(1600, {"q": 2}, launches=[("a", 2, "on-demand")]),  # the re-plan of that tick
            Tick(1630, {"q": 2}, launches=[("a", 2, "spot")], then=fail("capacity")),
            Tick(1630, {"q": 2}, launches=[("a", 2, "on-demand")]),
            # the blackout runs out: spot first again (the failed probes start no new failing period)
            Tick(3100, {"q": 2}, launches=[("a", 2, "spot")]),
        ],
    ),
    (
        "blackout probe succeeds: the blackout ends, said once; spot from then on",
        C(SPOT_A),
        [
            *INTO_BLACKOUT,
            Tick(1600, {"q": 2}, launches=[("a", 2, "spot")], then=succeed()),
            Tick(
                1630,
                {"q": 2},
                launches=[("a", 2, "spot")],
                notices=["info:spot_back"],
                says=("spot capacity for 'a' is back", "blackout ended early"),
            ),
            Tick(1660, {"q": 2}, launches=[("a", 2, "spot")]),
        ],
    ),
    (
        "the probe goes before a dearer on-demand resource of the queue, which gets the demand when it fails",
        C(SPOT_A, DEAR_B),
        [
            Tick(1000, {"q": 2}, launches=[("a", 2, "spot")], then=fail("capacity")),
            Tick(1000, {"q": 2}, launches=[("b", 2, "on-demand")]),
            Tick(1300, {"q": 2}, launches=[("b", 2, "on-demand")], notices=["warning:spot_rollback"]),
            Tick(1500, {"q": 2}, launches=[("b", 2, "on-demand")]),
            Tick(1600, {"q": 2}, launches=[("a", 2, "spot")], then=fail("capacity")),
            Tick(1600, {"q": 2}, launches=[("b", 2, "on-demand")]),
        ],
    ),
    (
        "no demand, no probe: a blackout without launches runs its course",
        C(SPOT_A),
        [*INTO_BLACKOUT, Tick(1600, {"q": 0}), Tick(3000, {"q": 0}), Tick(3100, {"q": 1}, launches=[("a", 1, "spot")])],
    ),
]


@cases(*CASES)
def test_spot_probe(config: Config, ticks: list[Tick]) -> None:
    run_case(config, ticks)


def test_the_probe_says_why_in_its_launch_reason() -> None:
    config = C(SPOT_A)
    state = run_case(config, INTO_BLACKOUT)[-1].state
    (launch,) = decide(config, obs(1600, {"q": 2}, [], []), state).launches
    assert launch.spot
    assert launch.reason.endswith(
        "probing spot 5m into its blackout (on-demand this tick if it fails; the blackout ends if it succeeds)"
    )
