import math

import pytest

from precision_router.routing import RoutingState
from precision_router.routing.spec import router_from_spec
from precision_router.routing.threshold import UncertaintyRouter, calibrate_threshold, uncertainty


def test_uncertainty_measures():
    sure = [math.log(0.97), math.log(0.02), math.log(0.01)]
    unsure = [math.log(0.4), math.log(0.35), math.log(0.25)]
    assert uncertainty(unsure) > uncertainty(sure)
    assert uncertainty(unsure, "margin") > uncertainty(sure, "margin")
    assert uncertainty([0.0]) == pytest.approx(0.0)
    with pytest.raises(ValueError, match="measure"):
        uncertainty(sure, "variance")


def test_uncertainty_router_routes_unsure_steps_high():
    router = UncertaintyRouter(0.5)
    sure = RoutingState("t", extras={"low_logprobs": [math.log(0.97), math.log(0.03)]})
    unsure = RoutingState("t", extras={"low_logprobs": [math.log(0.5), math.log(0.5)]})
    assert router.decide(sure).route == "low"
    assert router.decide(unsure).route == "high"
    assert router.decide(unsure).p_high == pytest.approx(math.log(2))
    assert router.decide(RoutingState("t")).route == "low"
    assert router_from_spec("margin@-0.2").measure == "margin"


def test_calibration_hits_the_target_share():
    scores = [i / 100 for i in range(100)]
    for target in (0.0, 0.1, 0.25, 0.5, 1.0):
        threshold = calibrate_threshold(scores, target)
        share = sum(s >= threshold for s in scores) / len(scores)
        assert share == pytest.approx(target)
    with pytest.raises(ValueError, match="target_share"):
        calibrate_threshold(scores, 1.5)
    with pytest.raises(ValueError, match="no scores"):
        calibrate_threshold([], 0.2)


def test_router_specs(tmp_path):
    from precision_router.routing import AlwaysHigh, RandomRouter

    assert isinstance(router_from_spec("high"), AlwaysHigh)
    assert router_from_spec("random:0.25", seed=3).p_high == 0.25
    assert router_from_spec("entropy@0.7").threshold == 0.7
    with pytest.raises(ValueError, match="unknown policy"):
        router_from_spec("sometimes")
    with pytest.raises(ValueError, match="bad policy"):
        router_from_spec("random:lots")
    assert isinstance(router_from_spec("random:0"), RandomRouter)


def test_budget_specs_cap_any_policy():
    from precision_router.routing import RoutingState
    from precision_router.routing.budget import BudgetRouter
    from precision_router.routing.spec import parse_policy_spec

    router = router_from_spec("budget:2:high")
    assert isinstance(router, BudgetRouter) and router.max_high == 2
    routes = [router.decide(RoutingState("t", (), "c", {}, step=i)).route for i in range(4)]
    assert routes == ["high", "high", "low", "low"]  # the first two steps high, then low
    capped = router_from_spec("budget:1:random:0.5", seed=4)
    assert capped.router.p_high == 0.5 and capped.max_high == 1
    assert parse_policy_spec("budget:3:margin@-0.5").inner.kind == "margin"
    tokens = router_from_spec("budget:4000tok:random:0.5")
    assert isinstance(tokens, BudgetRouter) and tokens.max_high_tokens == 4000 and tokens.max_high is None
    assert parse_policy_spec("budget:4000TOK:high").tokens and not parse_policy_spec("budget:4:high").tokens
    bad_specs = (
        "budget:2",
        "budget:x:high",
        "budget:-1:high",
        "budget:2:sometimes",
        "budget:tok:high",
        "budget:2t:high",
    )
    for bad in bad_specs:
        with pytest.raises(ValueError, match="policy"):
            router_from_spec(bad)


def test_calibrating_a_policy_on_recorded_low_distributions():
    from precision_router.evaluation.calibration import calibrate_policy, calibrated
    from precision_router.traces import Episode, Step

    steps = [
        Step(index=i, route="high", candidates=["a", "b"], logprobs={"low": [0.0, -0.1 * i], "high": [0.0, -5.0]})
        for i in range(20)
    ]
    base = UncertaintyRouter(0.0)
    threshold = calibrate_policy(base, [Episode(steps=steps)], 0.25)
    router = calibrated(base, [Episode(steps=steps)], 0.25)
    assert router.threshold == threshold and base.threshold == 0.0 and base.name == "entropy@0"
    decided = [
        router.decide(RoutingState("t", extras={"low_logprobs": _log_softmax(s.logprobs["low"])})).route for s in steps
    ]
    assert decided.count("high") == 5
    assert router.name == f"entropy@{threshold:.4g}"


def _log_softmax(values):
    top = max(values)
    total = math.log(sum(math.exp(v - top) for v in values)) + top
    return [v - total for v in values]
