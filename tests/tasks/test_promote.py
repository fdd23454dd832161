"""The promotion gate is a pure function of metrics and policy; aliases keep the old champion for rollback."""

from __future__ import annotations

import math

from schemas.registry import PromotionPolicy
from tasks.promote import decide_promotion, promotion_aliases


def metrics(candidate: float, base: float = 20.0, champion: float | None = None) -> dict:
    result = {"base": {"perplexity": base, "loss": math.log(base)}, "candidate": {"perplexity": candidate, "loss": 0}}
    if champion is not None:
        result["champion"] = {"perplexity": champion, "loss": math.log(champion)}
    return result


def test_first_version_is_compared_with_the_base_model() -> None:
    decision = decide_promotion(metrics(12.0), PromotionPolicy(min_improvement=0.01), None)
    assert decision.promote and "the base model" in decision.reason and "+40.00%" in decision.reason


def test_candidate_must_beat_the_champion_by_the_margin() -> None:
    policy = PromotionPolicy(min_improvement=0.05)
    assert decide_promotion(metrics(9.0, champion=10.0), policy, "3").promote
    held = decide_promotion(metrics(9.8, champion=10.0), policy, "3")
    assert not held.promote and "champion v3" in held.reason and "at least 5.00%" in held.reason


def test_equal_is_not_better_even_without_a_margin() -> None:
    assert not decide_promotion(metrics(10.0, champion=10.0), PromotionPolicy(min_improvement=0.0), "1").promote


def test_diverged_training_is_never_promoted() -> None:
    decision = decide_promotion(metrics(float("nan")), PromotionPolicy(), None)
    assert not decision.promote and "diverged" in decision.reason


def test_loss_can_be_the_gate_metric() -> None:
    data = {"base": {"loss": 3.0}, "candidate": {"loss": 2.0}}
    assert decide_promotion(data, PromotionPolicy(metric="loss"), None).promote


def test_promotion_aliases() -> None:
    assert promotion_aliases("4", "2") == {"champion": "4", "previous-champion": "2"}
    assert promotion_aliases("1", None) == {"champion": "1"}
