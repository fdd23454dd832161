"""The gate that sees through noise: the paired bootstrap (adapterflow/registry/significance.py) and the primary
check that needs its lower bound to clear min_improvement."""

from __future__ import annotations

import math

import numpy as np
import pytest

from adapterflow.core.errors import ConfigError
from adapterflow.registry.promotion import MAJORITY, gate_inputs, majority_class_metrics, promotion_decision
from adapterflow.registry.significance import macro_f1, metric_of, missing_examples, paired_bootstrap
from schemas import load_config
from schemas.registry import PromotionPolicy

CONFIG = "configs/smollm2_lora_cpu.yaml"


def lm_examples(nll: np.ndarray, tokens: np.ndarray) -> tuple[dict[str, float], dict[str, list[float]]]:
    """A causal LM's aggregate metrics and per-example values, as response_perplexity reports them."""
    loss = float(nll.sum() / tokens.sum())
    return {"loss": loss, "perplexity": math.exp(loss)}, {"nll": nll.tolist(), "tokens": tokens.tolist()}


def versus_champion(candidate: tuple, champion: tuple, policy: PromotionPolicy):
    """The gate on a candidate against champion v3, evaluated on the same examples."""
    metrics = {"candidate": candidate[0], "champion": champion[0]}
    per_example = {"candidate": candidate[1], "champion": champion[1]}
    inputs = gate_inputs(metrics, per_example, "perplexity", "3", "3", None, {})
    return promotion_decision(inputs, policy)


def noisy_pair(examples: int, better: float, noise: float, seed: int) -> tuple[tuple, tuple]:
    """Champion and candidate per-example NLL on the same examples: the candidate's perplexity exactly `better`
    (relative) lower, each example's NLL jittered by `noise` nats per token in either direction."""
    rng = np.random.default_rng(seed)
    tokens = rng.integers(5, 40, examples).astype(float)
    champion = tokens * rng.gamma(4.0, 0.6, examples)  # about 2.4 nats per token, varying by example
    candidate = champion + tokens * rng.normal(0, noise, examples)
    shift = (champion.sum() / tokens.sum() + math.log(1 - better)) - candidate.sum() / tokens.sum()
    candidate += shift * tokens  # now exactly `better` lower perplexity on the whole set
    return lm_examples(candidate, tokens), lm_examples(champion, tokens)


def test_a_one_percent_gain_on_50_noisy_rows_is_noise_at_95_percent_but_passes_a_point_comparison() -> None:
    candidate, champion = noisy_pair(50, better=0.01, noise=0.5, seed=1)
    assert candidate[0]["perplexity"] == pytest.approx(champion[0]["perplexity"] * 0.99)
    held = versus_champion(candidate, champion, PromotionPolicy(min_improvement=0.0))
    assert not held.promote
    primary = next(line for line in held.reasons if "primary" in line)
    print(primary)
    assert primary.startswith("FAIL primary perplexity: candidate perplexity ")
    assert "vs champion v3" in primary and "+1.00% improvement, 95% lower bound -" in primary
    assert "on 50 examples (this eval size detects about " in primary and "gate needs at least 0.00%" in primary
    point = versus_champion(candidate, champion, PromotionPolicy(min_improvement=0.0, confidence="none"))
    assert point.promote and "lower bound" not in point.reason


def test_a_clearly_better_candidate_is_promoted_with_its_interval_in_the_reason() -> None:
    candidate, champion = noisy_pair(50, better=0.25, noise=0.2, seed=2)
    decision = versus_champion(candidate, champion, PromotionPolicy())
    print(decision.reason)
    assert decision.promote
    assert "+25.00% improvement, 95% lower bound +" in decision.reason and "on 50 examples" in decision.reason
    lower = float(decision.reason.split("lower bound +")[1].split("%")[0]) / 100
    assert 0.01 <= lower < 0.25


def false_promotion_rates(shared_difficulty: bool, trials: int = 200, examples: int = 100) -> dict[float, float]:
    """The share of seeded trials the gate promotes, by min_improvement, when candidate and reference per-example
    values come from one distribution (any gain it sees is noise). `shared_difficulty`: each example is as hard
    for both models (as on a real eval set), the models differing only by per-example noise; otherwise the two
    models' values are independent draws."""
    promoted = {0.0: 0, 0.01: 0}
    for trial in range(trials):
        rng = np.random.default_rng(1000 + trial)
        tokens = rng.integers(5, 40, examples).astype(float)
        difficulty = rng.gamma(4.0, 0.6, examples) if shared_difficulty else rng.gamma(4.0, 0.6, (2, examples))
        nll = tokens * difficulty * rng.lognormal(0, 0.3, (2, examples))
        candidate, reference = lm_examples(nll[0], tokens), lm_examples(nll[1], tokens)
        for margin in promoted:
            promoted[margin] += versus_champion(candidate, reference, PromotionPolicy(min_improvement=margin)).promote
    rates = {margin: count / trials for margin, count in promoted.items()}
    print(f"false promotions in {trials} trials of {examples} examples (shared difficulty {shared_difficulty}), "
          f"by min_improvement: {rates}")
    return rates


def test_a_candidate_no_better_than_the_champion_is_promoted_in_at_most_5_percent_of_trials() -> None:
    rates = false_promotion_rates(shared_difficulty=True)
    assert rates[0.0] <= 0.05 and rates[0.01] <= 0.05


def test_independent_per_example_values_are_promoted_about_as_often_as_the_confidence_allows() -> None:
    # the harder null: 4000 trials measured 5.55% (min_improvement 0) and 5.15% (0.01) against the nominal 5%;
    # the bound is a little optimistic for heavy-tailed values that share nothing between the models
    rates = false_promotion_rates(shared_difficulty=False)
    assert rates[0.0] <= 0.07 and rates[0.01] <= 0.07


def test_without_per_example_values_for_both_the_gate_compares_points_and_says_so() -> None:
    candidate, champion = noisy_pair(50, better=0.25, noise=0.2, seed=2)
    older = versus_champion(candidate, (champion[0], {}), PromotionPolicy())
    assert older.promote
    assert "(point comparison: no per-example perplexity values for champion v3 (a run from before they were " \
        "logged))" in older.reason
    other_size = versus_champion(candidate, (champion[0], {"nll": [1.0], "tokens": [1.0]}), PromotionPolicy())
    assert "not of the same examples" in other_size.reason


@pytest.mark.parametrize("bad", [math.nan, math.inf])
def test_a_champion_with_a_non_finite_primary_metric_is_replaced_by_any_finite_candidate(bad: float) -> None:
    candidate, champion = noisy_pair(50, better=0.0, noise=0.2, seed=3)
    champion[0]["perplexity"] = bad
    decision = versus_champion(candidate, champion, PromotionPolicy())
    assert decision.promote
    assert f"champion v3 perplexity is {bad}: any finite candidate replaces it" in decision.reason
    candidate[0]["perplexity"] = math.nan  # both diverged: nothing is promoted
    assert not versus_champion(candidate, champion, PromotionPolicy(required_checks=[])).promote


def test_the_resampled_metrics_are_the_reported_ones() -> None:
    from sklearn.metrics import f1_score

    rng = np.random.default_rng(0)
    labels, predicted = rng.integers(0, 4, 60), rng.integers(0, 4, 60)
    weights = np.stack([np.bincount(rng.integers(0, 60, 60), minlength=60) for _ in range(20)]).astype(float)
    for row in weights:
        drawn = np.repeat(np.arange(60), row.astype(int))
        expected = f1_score(labels[drawn], predicted[drawn], average="macro", zero_division=0)
        assert macro_f1(labels, predicted, row[None])[0] == pytest.approx(expected)
    nll, tokens = rng.gamma(2, 1, 30) * 10, rng.integers(1, 20, 30).astype(float)
    whole = np.ones((1, 30))
    assert metric_of("perplexity", {"nll": nll, "tokens": tokens}, whole)[0] == pytest.approx(
        math.exp(nll.sum() / tokens.sum()))
    assert metric_of("accuracy", {"correct": np.array([1.0, 0, 1, 1])}, np.ones((1, 4)))[0] == 0.75


def test_the_bootstrap_is_seeded_and_knows_what_it_can_not_resample() -> None:
    candidate, champion = noisy_pair(50, better=0.05, noise=0.3, seed=4)
    first = paired_bootstrap("perplexity", candidate[1], champion[1], "lower", 0.95)
    assert first == paired_bootstrap("perplexity", candidate[1], champion[1], "lower", 0.95)
    assert first.point == pytest.approx(0.05) and first.lower < first.point and first.examples == 50
    assert first.detectable == pytest.approx(first.point - first.lower)
    assert paired_bootstrap("perplexity", candidate[1], champion[1], "lower", 0.99).lower < first.lower
    assert missing_examples("chrf", {}, {}, "x") == "chrf is not a sum over eval examples"
    assert missing_examples("loss", candidate[1], champion[1], "x") is None


def test_a_classifiers_first_gate_resamples_against_the_majority_class() -> None:
    rng = np.random.default_rng(5)
    labels = rng.integers(0, 2, 200)
    predicted = np.where(rng.random(200) < 0.9, labels, 1 - labels)  # 90% right
    per_example = {"candidate": {"label": labels.tolist(), "predicted": predicted.tolist(),
                                 "correct": (labels == predicted).astype(float).tolist()}}
    metrics = {"candidate": {"macro_f1": 0.9, "accuracy": float((labels == predicted).mean())}, "base": {}}
    inputs = gate_inputs(metrics, per_example, "macro_f1", None, None, None,
                         {MAJORITY: majority_class_metrics(labels.tolist())})
    assert inputs.per_example[MAJORITY]["predicted"] == [float(np.bincount(labels).argmax())] * 200
    decision = promotion_decision(inputs, PromotionPolicy())
    assert decision.promote and "vs the majority-class baseline" in decision.reason
    assert "95% lower bound" in decision.reason and "on 200 examples" in decision.reason


def test_a_generation_metric_gate_with_confidence_needs_enough_sampled_answers() -> None:
    with pytest.raises(ConfigError) as caught:
        load_config(CONFIG, ["registry.promotion.metric=rouge_l", "evaluation.sample_generations=5",
                             "training.epochs=0"])  # a second, unrelated problem: both are reported at once
    text = str(caught.value)
    assert "needs evaluation.sample_generations of at least 30 (it is 5)" in text and "training.epochs" in text
    assert load_config(CONFIG, ["registry.promotion.metric=rouge_l", "evaluation.sample_generations=30"])
    assert load_config(CONFIG, ["registry.promotion.metric=rouge_l", "evaluation.sample_generations=5",
                                "registry.promotion.confidence=none"]).registry.promotion.confidence is None
