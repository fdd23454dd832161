"""Registration in the MLflow Model Registry and the promotion gate."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, NonNegativeFloat, model_validator

from schemas.base import StrictModel

LOWER_IS_BETTER = ("loss", "perplexity", "general_perplexity", "forgetting")  # forgetting: change vs the base
HIGHER_IS_BETTER = ("accuracy", "macro_f1", "rouge_l", "chrf", "bleu", "exact_match")
Direction = Literal["lower", "higher"]
CHECK_VALIDATION = "validation_passed"
CHECK_FINITE = "finite_metrics"
# what the drift report scores against the champion's training data (adapterflow/data/drift.py)
DriftFeature = Literal["rows_added", "rows_removed", "rows_changed", "sources", "quarantine_rate", "pii_rate",
                       "prompt_length", "answer_length", "vocabulary", "eval_set"]


def metric_direction(metric: str) -> Direction | None:
    """Which way a metric improves, from its name or the last `/` part of it (`forgetting/perplexity`); None
    for names we don't know."""
    name = metric.rsplit("/", 1)[-1]
    if name in LOWER_IS_BETTER:
        return "lower"
    if name in HIGHER_IS_BETTER:
        return "higher"
    return None


def _known_direction(metric: str, direction: str, key: str) -> None:
    if direction == "auto" and metric != "auto" and metric_direction(metric) is None:
        raise ValueError(f"can't tell whether {metric} is better lower or higher: set {key}.direction: lower|higher "
                         f"(known: lower {', '.join(LOWER_IS_BETTER)}; higher {', '.join(HIGHER_IS_BETTER)})")


class GuardMetric(StrictModel):
    """A metric the candidate may not lose much on, against the same reference as the primary metric."""

    metric: str = Field(description="any eval metric measured for the candidate and the reference, e.g. loss or a "
                                    "forgetting metric; one that was not measured blocks promotion")
    max_regression: float = Field(ge=0, description="largest allowed worsening against the reference")
    regression: Literal["relative", "absolute"] = Field(
        "relative", description="relative: max_regression is a share of the reference's value (0.02 = 2%); "
                                "absolute: in the metric's own units")
    direction: Literal["auto", "lower", "higher"] = Field(
        "auto", description="which way the metric improves; auto knows loss, perplexity, general_perplexity, "
                            "forgetting, accuracy, macro_f1, rouge_l, chrf, bleu, exact_match (also as the last part "
                            "of a name like forgetting/loss)")

    @model_validator(mode="after")
    def _direction_known(self) -> GuardMetric:
        _known_direction(self.metric, self.direction, "guards[]")
        return self


class PromotionPolicy(StrictModel):
    """When a new version takes the `champion` alias: every check must pass, and every check's result is recorded."""

    metric: str = Field(
        "auto", description="primary eval metric; auto: perplexity for causal LMs, macro_f1 for classifiers"
    )
    direction: Literal["auto", "lower", "higher"] = Field(
        "auto", description="which way the primary metric improves (auto: known from its name)"
    )
    min_improvement: float = Field(
        0.01, ge=0, lt=1, description="relative improvement over the reference needed, e.g. 0.01 = 1%; the "
                                      "reference is the champion, or without one the majority-class baseline "
                                      "(classifiers) or the base model"
    )
    threshold: float | None = Field(
        None, description="an absolute bar for the primary metric as well: at least this (higher-is-better metrics) "
                          "or at most this (lower-is-better)"
    )
    guards: list[GuardMetric] = Field(default_factory=list, description="metrics with a maximum regression")
    required_checks: list[Literal["validation_passed", "finite_metrics"]] = Field(
        default_factory=lambda: [CHECK_VALIDATION, CHECK_FINITE],
        description="validation_passed: the run's data validation succeeded; finite_metrics: every candidate "
                    "metric is a finite number",
    )
    allow_without_champion_comparison: bool = Field(
        False, description="let a candidate replace a champion that was not evaluated on the same eval set "
                           "(evaluation.compare_champion false, or another base model, tokenizer or label set)"
    )
    max_drift: dict[DriftFeature, NonNegativeFloat] | None = Field(
        None, description="hold promotion when a drift score against the champion's training data exceeds its "
                          "limit, e.g. {vocabulary: 0.1, rows_added: 0.5} (scores: see the README's drift section)"
    )

    @model_validator(mode="after")
    def _direction_known(self) -> PromotionPolicy:
        _known_direction(self.metric, self.direction, "registry.promotion")
        return self


class RegistryConfig(StrictModel):
    """Where adapters are registered and how they are promoted."""

    model_name: str | None = Field(None, description="registered model name (default: the config's name)")
    promotion: PromotionPolicy = PromotionPolicy()
