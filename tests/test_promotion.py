"""The promotion gate as a pure function: examples, then properties that hold whatever the inputs."""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from adapterflow.registry.promotion import (
    MAJORITY,
    GateInputs,
    majority_class_metrics,
    promotion_aliases,
    promotion_decision,
    relative,
)
from schemas.registry import GuardMetric, PromotionPolicy, metric_direction

def metrics(candidate: float, base: float = 20.0, champion: float | None = None) -> dict:
    result = {"base": {"perplexity": base, "loss": math.log(base)}, "candidate": {"perplexity": candidate, "loss": 0}}
    if champion is not None:
        result["champion"] = {"perplexity": champion, "loss": math.log(champion)}
    return result


def decide(values: dict, policy: PromotionPolicy | None = None, champion: str | None = None, **facts):
    facts = {"evaluated_champion": champion, **facts}
    return promotion_decision(GateInputs(metrics=values, champion=champion, **facts), policy or PromotionPolicy())


def test_first_version_is_compared_with_the_base_model() -> None:
    decision = decide(metrics(12.0))
    assert decision.promote and decision.reference == "the base model"
    assert "the base model" in decision.reason and "+40.00%" in decision.reason
    assert decision.reasons == [
        "pass finite_metrics: all 2 candidate metrics are finite",
        "pass champion_compared: no champion yet: this is the first candidate",
        ("pass primary perplexity: candidate perplexity 12 vs the base model 20: +40.00% improvement, gate needs "
         "at least 1.00% (point comparison: no per-example perplexity values for the candidate (a run from before "
         "they were logged))"),
    ]


def test_candidate_must_beat_the_champion_by_the_margin() -> None:
    policy = PromotionPolicy(min_improvement=0.05)
    assert decide(metrics(9.0, champion=10.0), policy, champion="3").promote
    held = decide(metrics(9.8, champion=10.0), policy, champion="3")
    assert not held.promote and "champion v3" in held.reason and "at least 5.00%" in held.reason


def test_equal_is_not_better_even_without_a_margin() -> None:
    assert not decide(metrics(10.0, champion=10.0), PromotionPolicy(min_improvement=0.0), champion="1").promote


def test_diverged_training_is_never_promoted() -> None:
    decision = decide(metrics(float("nan")))
    assert not decision.promote and "diverged" in decision.reason
    assert "FAIL finite_metrics: candidate perplexity is nan: training diverged" in decision.reasons


def test_loss_can_be_the_gate_metric() -> None:
    assert decide({"base": {"loss": 3.0}, "candidate": {"loss": 2.0}}, PromotionPolicy(metric="loss")).promote


def test_validation_passed_of_older_configs_is_accepted_ignored_and_warned_about() -> None:
    # data validation stops a run before the gate: the check could never fail, so it is no longer listed
    assert PromotionPolicy().required_checks == ["finite_metrics"]
    with pytest.warns(UserWarning, match="validation_passed is deprecated and ignored"):
        old = PromotionPolicy(required_checks=["validation_passed", "finite_metrics"])
    assert old.required_checks == ["finite_metrics"]
    assert not any("validation" in line for line in decide(metrics(12.0), old).reasons)


def test_an_existing_champion_that_was_not_compared_blocks_unless_the_policy_allows_it() -> None:
    skipped = decide(metrics(12.0), champion=None, evaluated_champion=None,
                     champion_skipped="evaluation.compare_champion is false")
    assert skipped.promote  # no champion exists: nothing to compare with
    facts = {"champion": "2", "evaluated_champion": None, "champion_skipped": "evaluation.compare_champion is false"}
    held = promotion_decision(GateInputs(metrics=metrics(12.0), **facts), PromotionPolicy())
    assert not held.promote and held.reference == "the base model"
    assert ("champion v2 was not compared (evaluation.compare_champion is false)" in held.reason
            and "allow_without_champion_comparison: true" in held.reason)
    allowed = promotion_decision(GateInputs(metrics=metrics(12.0), **facts),
                                 PromotionPolicy(allow_without_champion_comparison=True))
    assert allowed.promote and any("allowed by registry.promotion" in line for line in allowed.reasons)


def test_a_champion_that_moved_after_evaluation_blocks() -> None:
    moved = decide(metrics(9.0, champion=10.0), champion="4", evaluated_champion="3")
    assert not moved.promote and "champion v3 was evaluated, but champion is now v4" in moved.reason
    gone = decide(metrics(9.0, champion=10.0), champion=None, evaluated_champion="3")
    assert not gone.promote and "no version is champion now" in gone.reason
    no_metrics = decide(metrics(9.0), champion="3")  # evaluated, yet its metrics are missing: never the base instead
    assert not no_metrics.promote and "perplexity was not measured for champion v3" in no_metrics.reason


def test_classifiers_are_compared_with_the_majority_class_not_the_random_head() -> None:
    values = {"base": {"macro_f1": 0.2, "accuracy": 0.4}, "candidate": {"macro_f1": 0.3, "accuracy": 0.6}}
    baselines = {MAJORITY: majority_class_metrics([0, 0, 0, 1, 1])}
    decision = decide(values, baselines=baselines, task_metric="macro_f1")
    assert decision.reference.startswith("the majority-class baseline")
    assert not decision.promote and "vs the majority-class baseline (always the most frequent eval label) 0.375" \
        in decision.reason
    assert decide(values, PromotionPolicy(metric="accuracy"), baselines=baselines).reason.count("0.6 vs the majority") == 1


def test_majority_class_metrics_match_scikit_learn() -> None:
    result = majority_class_metrics([1, 0, 1, 1])  # always 1: F1 of class 1 is 6/7, of class 0 is 0
    assert result["accuracy"] == 0.75 and result["macro_f1"] == pytest.approx(3 / 7)
    assert majority_class_metrics([0, 1])["accuracy"] == 0.5 and majority_class_metrics([]) == {}


def test_threshold_is_an_absolute_bar_in_the_metrics_direction() -> None:
    values = {"base": {"macro_f1": 0.2}, "candidate": {"macro_f1": 0.5}}
    held = decide(values, PromotionPolicy(metric="macro_f1", threshold=0.6))
    assert not held.promote and "registry.promotion.threshold needs at least 0.6" in held.reason
    assert decide(values, PromotionPolicy(metric="macro_f1", threshold=0.5)).promote
    assert not decide(metrics(12.0), PromotionPolicy(threshold=10.0)).promote  # perplexity: at most 10


def test_guards_limit_regression_relative_or_absolute() -> None:
    values = {"base": {"perplexity": 20.0, "accuracy": 0.50}, "candidate": {"perplexity": 12.0, "accuracy": 0.48}}
    relative_guard = GuardMetric(metric="accuracy", max_regression=0.05)
    assert decide(values, PromotionPolicy(guards=[relative_guard])).promote  # -4% of 0.50 is within 5%
    tight = decide(values, PromotionPolicy(guards=[GuardMetric(metric="accuracy", max_regression=0.01,
                                                                  regression="absolute")]))
    assert not tight.promote and "regression +0.02, allowed at most 0.01 (absolute)" in tight.reason


def test_forgetting_is_a_guard_against_the_champion() -> None:
    values = metrics(9.0, champion=10.0)  # 10% better than the champion on the primary metric
    values["candidate"]["forgetting"], values["champion"]["forgetting"] = 0.12, 0.04  # change of general perplexity
    guard = GuardMetric(metric="forgetting", max_regression=0.05, regression="absolute")
    decision = decide(values, PromotionPolicy(guards=[guard]), champion="2")
    assert not decision.promote
    assert "FAIL guard forgetting: candidate forgetting 0.12 vs champion v2 0.04: regression +0.08, allowed at most " \
        "0.05 (absolute)" in decision.reasons
    assert decide(values, PromotionPolicy(guards=[guard.model_copy(update={"max_regression": 0.1})]),
                  champion="2").promote


def test_a_guard_on_a_metric_that_was_not_measured_blocks_instead_of_crashing() -> None:
    guard = GuardMetric(metric="forgetting/perplexity", max_regression=0.1)
    decision = decide(metrics(12.0), PromotionPolicy(guards=[guard]))
    assert not decision.promote
    assert "FAIL guard forgetting/perplexity: forgetting/perplexity was not measured for the candidate" in \
        " ".join(decision.reasons)


def test_any_measured_metric_can_be_a_guard_with_a_stated_direction() -> None:
    values = metrics(12.0)
    values["candidate"]["forgetting/delta"] = 0.5
    values["base"]["forgetting/delta"] = 0.0
    guard = GuardMetric(metric="forgetting/delta", direction="lower", max_regression=0.1, regression="absolute")
    assert "regression +0.5" in decide(values, PromotionPolicy(guards=[guard])).reason
    with pytest.raises(ValidationError, match="set guards\\[\\].direction"):
        GuardMetric(metric="forgetting/delta", max_regression=0.1)
    with pytest.raises(ValidationError, match="can't tell whether perplexty"):
        PromotionPolicy(metric="perplexty")


def test_promotion_aliases() -> None:
    assert promotion_aliases("4", "2") == {"champion": "4", "previous-champion": "2"}
    assert promotion_aliases("1", None) == {"champion": "1"}


# --- properties: whatever the inputs -------------------------------------------------------------------------

NAMES = ["perplexity", "loss", "accuracy", "macro_f1", "rouge_l", "forgetting/perplexity"]
odd = st.sampled_from([math.nan, math.inf, -math.inf, 0.0, -0.0])
finite_numbers = st.floats(-1e6, 1e6, allow_nan=False, allow_infinity=False)
# mostly plausible values, so that many drawn candidates pass and the properties are really exercised
numbers = st.one_of(*[st.floats(0.01, 100)] * 8, finite_numbers, odd)
guards = st.builds(GuardMetric, metric=st.sampled_from(NAMES), max_regression=st.floats(0, 10),
                   regression=st.sampled_from(["relative", "absolute"]))
policies = st.builds(
    PromotionPolicy, metric=st.sampled_from(["auto", "auto", *NAMES]), min_improvement=st.floats(0, 0.99),
    threshold=st.one_of(st.none(), st.none(), numbers), guards=st.lists(guards, max_size=2),
    required_checks=st.sampled_from([["finite_metrics"], []]), confidence=st.sampled_from([None, 0.95]),
    allow_without_champion_comparison=st.booleans(),
)
# (champion now, champion evaluated): consistent most of the time, sometimes moved, gone or not compared
champions = st.sampled_from([(None, None), (None, None), ("2", "2"), ("2", "2"), ("3", "2"), (None, "2"), ("2", None)])


@st.composite
def gate_inputs(draw: st.DrawFn) -> GateInputs:
    """Models that mostly measure the same metrics, with values near each other, sometimes odd or missing."""
    measured = sorted(draw(st.sets(st.sampled_from(NAMES), min_size=1)))

    def model(near: dict[str, float] | None = None) -> dict[str, float]:
        if draw(st.integers(0, 9)) == 9:  # hypothesis draws small numbers most: the rare case is the largest
            return {name: draw(numbers) for name in draw(st.lists(st.sampled_from(NAMES), unique=True))}
        if near:
            return {name: value * draw(st.floats(0.5, 1.5)) for name, value in near.items()}
        return {name: draw(numbers) for name in measured}

    champion, evaluated = draw(champions)
    base = model()
    values = {"candidate": model(base), "base": base}
    if evaluated is not None and draw(st.integers(0, 9)) < 9:
        values["champion"] = model(base)
    return GateInputs(
        metrics=values, task_metric=draw(st.sampled_from(measured)), champion=champion, evaluated_champion=evaluated,
        champion_skipped=draw(st.none() | st.just("why")),
        baselines={MAJORITY: model(base)} if draw(st.booleans()) else {},
    )


@st.composite
def cases(draw: st.DrawFn) -> tuple[GateInputs, PromotionPolicy]:
    """Inputs and a policy that mostly asks about what was measured."""
    inputs = draw(gate_inputs())
    measured = sorted(inputs.metrics["candidate"]) or NAMES
    names = st.sampled_from(measured) if draw(st.integers(0, 4)) < 4 else st.sampled_from(NAMES)
    guard = st.builds(GuardMetric, metric=names, max_regression=st.floats(0, 1),
                      regression=st.sampled_from(["relative", "absolute"]))
    policy = draw(policies).model_copy(update={
        "metric": draw(st.sampled_from(["auto", *measured]) if draw(st.integers(0, 4)) < 4 else st.sampled_from(NAMES)),
        "min_improvement": draw(st.floats(0, 0.3)),
        "guards": draw(st.lists(guard, max_size=2)),
    })
    return inputs, policy


def expected_reference(inputs: GateInputs, metric: str) -> dict[str, float]:
    """The spec's reference: the evaluated champion, else the majority-class baseline, else the base model."""
    if inputs.evaluated_champion is not None:
        return inputs.metrics.get("champion", {})
    if metric in inputs.baselines.get(MAJORITY, {}):
        return inputs.baselines[MAJORITY]
    return inputs.metrics.get("base", {})


def gain(candidate: float, reference: float, metric: str, policy_direction: str = "auto") -> float:
    direction = metric_direction(metric) if policy_direction == "auto" else policy_direction
    return reference - candidate if direction == "lower" else candidate - reference


@settings(max_examples=200, deadline=None)
@given(cases())
def test_a_promoted_candidate_beat_the_reference_and_every_guard(case: tuple[GateInputs, PromotionPolicy]) -> None:
    inputs, policy = case
    decision = promotion_decision(inputs, policy)
    assert decision.promote == all(line.startswith("pass ") for line in decision.reasons)
    if not decision.promote:
        return
    metric = inputs.task_metric if policy.metric == "auto" else policy.metric
    if inputs.champion is not None:  # the champion, when one exists, is the reference unless explicitly waived
        assert inputs.evaluated_champion == inputs.champion or policy.allow_without_champion_comparison
    if inputs.evaluated_champion is not None:
        assert decision.reference == f"champion v{inputs.evaluated_champion}"
    reference = expected_reference(inputs, metric)
    candidate = inputs.metrics["candidate"]
    assert math.isfinite(candidate[metric])
    if inputs.evaluated_champion is not None and not math.isfinite(reference[metric]):
        assert "any finite candidate replaces it" in decision.reason  # a diverged champion is no bar
    else:
        better = gain(candidate[metric], reference[metric], metric, policy.direction)
        assert better > 0 and relative(better, reference[metric]) >= policy.min_improvement
    for guard in policy.guards:
        guard_reference = expected_reference(inputs, guard.metric)[guard.metric]
        regression = -gain(candidate[guard.metric], guard_reference, guard.metric)
        allowed = guard.max_regression * (abs(guard_reference) if guard.regression == "relative" else 1)
        assert regression <= allowed + 1e-9 * abs(allowed)
    if "finite_metrics" in policy.required_checks:
        assert all(math.isfinite(value) for value in candidate.values())


@settings(max_examples=150, deadline=None)
@given(policies, finite_numbers, st.floats(0, 1e3, allow_nan=False), st.booleans(), st.sampled_from(NAMES[:5]))
def test_a_candidate_worse_than_the_reference_is_never_promoted(
    policy: PromotionPolicy, reference: float, worse_by: float, with_champion: bool, metric: str,
) -> None:
    policy = policy.model_copy(update={"metric": metric, "direction": "auto"})
    candidate = reference - worse_by if metric_direction(metric) == "higher" else reference + worse_by
    other = "champion" if with_champion else "base"
    champion = "7" if with_champion else None
    inputs = GateInputs(metrics={"candidate": {metric: candidate}, other: {metric: reference}}, champion=champion,
                        evaluated_champion=champion)
    assert not promotion_decision(inputs, policy).promote


@settings(max_examples=150, deadline=None)
@given(policies, st.sampled_from(NAMES), st.floats(1e-3, 1e3), st.floats(0, 10), st.sampled_from(["relative", "absolute"]))
def test_a_candidate_past_any_guard_is_never_promoted(
    policy: PromotionPolicy, metric: str, reference: float, limit: float, kind: str,
) -> None:
    allowed = limit * reference if kind == "relative" else limit
    past = allowed * 1.01 + 1e-6
    candidate = reference - past if metric_direction(metric) == "higher" else reference + past
    guard = GuardMetric(metric=metric, max_regression=limit, regression=kind)
    policy = policy.model_copy(update={"guards": [*policy.guards, guard]})
    values = {"candidate": {"perplexity": 1.0, metric: candidate}, "base": {"perplexity": 100.0, metric: reference}}
    assert not promotion_decision(GateInputs(metrics=values), policy).promote


@settings(max_examples=150, deadline=None)
@given(policies, st.sampled_from(NAMES), st.sampled_from([math.nan, math.inf, -math.inf]), st.floats(0.01, 100))
def test_a_non_finite_metric_is_never_promoted(policy: PromotionPolicy, metric: str, bad: float, reference: float) -> None:
    good = reference * 3 if metric_direction(metric) == "higher" else reference / 1000  # far better than the base
    policy = policy.model_copy(update={"threshold": None, "guards": [], "metric": "perplexity", "direction": "auto"})

    def decided(value: float, **update) -> bool:
        values = {"base": {"perplexity": 100.0, metric: reference}, "candidate": {"perplexity": 0.1, metric: value}}
        return promotion_decision(GateInputs(metrics=values),
                                  policy.model_copy(update=update)).promote

    as_guard = GuardMetric(metric=metric, max_regression=10.0)
    for update in ({"required_checks": ["finite_metrics"]},  # any candidate metric
                   {"required_checks": [], "metric": metric},  # the primary metric, whatever the required checks
                   {"required_checks": [], "guards": [as_guard]}):  # a guard metric, whatever the required checks
        assert decided(good, **update), update  # the control: the same candidate with a finite value passes
        assert not decided(bad, **update), update
