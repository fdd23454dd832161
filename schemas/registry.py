"""Registration in the MLflow Model Registry and the promotion gate."""

from __future__ import annotations

import warnings
from typing import Literal

from pydantic import Field, NonNegativeFloat, field_validator, model_validator

from schemas.base import StrictModel

LOWER_IS_BETTER = ("loss", "perplexity", "general_perplexity", "forgetting")  # forgetting: change vs the base
HIGHER_IS_BETTER = ("accuracy", "macro_f1", "rouge_l", "chrf", "bleu", "exact_match")
Direction = Literal["lower", "higher"]
CHECK_VALIDATION = "validation_passed"  # deprecated: data validation stops the run before the gate, so it never failed
CHECK_FINITE = "finite_metrics"
# Below about 30 paired examples the bootstrap's resampled means are too coarse (an exact-match sample of 10 has
# 11 possible values) and its percentile bound too optimistic to call a gain real: the usual n >= 30 rule of thumb.
MIN_GENERATION_EXAMPLES = 30
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
    confidence: float | None = Field(
        0.95, gt=0.5, lt=1, description="the primary comparison must hold at this confidence: a paired bootstrap over "
                                        "the eval examples (2000 resamples) whose one-sided lower bound of the "
                                        "relative improvement must reach min_improvement; none: compare the point "
                                        "values only")
    guards: list[GuardMetric] = Field(default_factory=list, description="metrics with a maximum regression")
    required_checks: list[Literal["finite_metrics", "validation_passed"]] = Field(
        default_factory=lambda: [CHECK_FINITE],
        description="finite_metrics: every candidate metric is a finite number (validation_passed, from older "
                    "configs, is accepted and ignored: data validation stops a run before the gate)",
    )
    allow_without_champion_comparison: bool = Field(
        False, description="let a candidate replace a champion that was not evaluated on the same eval set "
                           "(evaluation.compare_champion false, or another base model, tokenizer or label set)"
    )
    max_drift: dict[DriftFeature, NonNegativeFloat] | None = Field(
        None, description="hold promotion when a drift score against the champion's training data exceeds its "
                          "limit, e.g. {vocabulary: 0.1, rows_added: 0.5} (scores: see the README's drift section)"
    )

    @field_validator("confidence", mode="before")
    @classmethod
    def _none_is_point_comparison(cls, value: object) -> object:
        return None if isinstance(value, str) and value.strip().lower() in ("none", "null") else value

    @field_validator("required_checks")
    @classmethod
    def _validation_check_is_gone(cls, checks: list[str]) -> list[str]:
        if CHECK_VALIDATION in checks:
            warnings.warn("registry.promotion.required_checks: validation_passed is deprecated and ignored (data "
                          "validation stops a run before the gate, so the check could never fail); remove it",
                          UserWarning, stacklevel=2)
        return [check for check in checks if check != CHECK_VALIDATION]

    @model_validator(mode="after")
    def _direction_known(self) -> PromotionPolicy:
        _known_direction(self.metric, self.direction, "registry.promotion")
        return self


class RegistryConfig(StrictModel):
    """Where adapters are registered and how they are promoted."""

    model_name: str | None = Field(None, description="registered model name (default: the config's name)")
    promotion: PromotionPolicy = PromotionPolicy()
