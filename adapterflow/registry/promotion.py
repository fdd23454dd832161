"""The promotion gate as pure functions: should this version become `champion`, and every reason why (not).

Only tasks/promote.py talks to the registry; everything here is a function of metrics, policy and facts.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field, replace

from adapterflow.tracking.run import ALIAS_CHAMPION, ALIAS_PREVIOUS_CHAMPION
from schemas.registry import CHECK_FINITE, CHECK_VALIDATION, Direction, PromotionPolicy, metric_direction

MAJORITY = "majority"  # the majority-class baseline of a classifier's eval labels


def promotion_aliases(new_version: str, current_champion: str | None) -> dict[str, str]:
    """Aliases to set on promotion; the old champion stays reachable for rollback."""
    aliases = {ALIAS_CHAMPION: new_version}
    if current_champion is not None and current_champion != new_version:
        aliases[ALIAS_PREVIOUS_CHAMPION] = current_champion
    return aliases


@dataclass(frozen=True)
class GateInputs:
    """What the gate decides on: eval metrics by model, and the registry's state as the task read it."""

    metrics: dict[str, dict[str, float]]  # {"base"|"candidate"|"champion": {metric: value}}
    task_metric: str = "perplexity"  # the metric of policy `auto`
    champion: str | None = None  # the version `champion` points at now
    evaluated_champion: str | None = None  # the champion version evaluated with the candidate
    champion_skipped: str | None = None  # why a champion was not evaluated
    baselines: dict[str, dict[str, float]] = field(default_factory=dict)  # e.g. {"majority": {...}}
    validation_passed: bool | None = None  # None: not recorded


@dataclass(frozen=True)
class Check:
    name: str
    passed: bool
    detail: str

    @property
    def line(self) -> str:
        return f"{'pass' if self.passed else 'FAIL'} {self.name}: {self.detail}"


@dataclass(frozen=True)
class PromotionDecision:
    """The verdict, the reference it was measured against, and every check with its outcome."""

    checks: tuple[Check, ...]
    reference: str | None  # "champion v3", "the majority-class baseline", "the base model"; None: no fair one

    @property
    def promote(self) -> bool:
        return bool(self.checks) and all(check.passed for check in self.checks)

    @property
    def reasons(self) -> list[str]:
        return [check.line for check in self.checks]

    @property
    def reason(self) -> str:
        """One line: the primary comparison when promoted, otherwise every failed check."""
        if self.promote:
            primary = next((c for c in self.checks if c.name.startswith("primary")), self.checks[-1])
            return f"promoted: {primary.detail}"
        return "not promoted: " + "; ".join(check.detail for check in self.checks if not check.passed)

    def blocked(self, check: Check) -> PromotionDecision:
        """The same decision with one more (failed) check, e.g. the champion moved before the alias could."""
        return replace(self, checks=(*self.checks, check))


def better_by(candidate: float, reference: float, direction: Direction) -> float:
    """How much better the candidate is, in the metric's units (negative: worse; NaN when either is)."""
    return reference - candidate if direction == "lower" else candidate - reference


def relative(amount: float, reference: float) -> float:
    """`amount` as a share of the reference's size; a non-zero amount on a zero reference is infinite."""
    if reference:
        return amount / abs(reference)  # NaN when either is NaN
    if math.isnan(amount) or not amount:
        return amount
    return math.copysign(math.inf, amount)


def choose_reference(inputs: GateInputs, metric: str) -> tuple[str, dict[str, float]] | None:
    """The model the candidate must beat on `metric`: the evaluated champion, else the majority-class baseline
    (when it measured `metric`), else the base model; None when none measured it."""
    if inputs.evaluated_champion is not None:  # never the base instead: the champion is the bar once it exists
        return f"champion v{inputs.evaluated_champion}", inputs.metrics.get("champion", {})
    baseline = inputs.baselines.get(MAJORITY, {})
    if metric in baseline:
        return "the majority-class baseline (always the most frequent eval label)", baseline
    if "base" in inputs.metrics:
        return "the base model", inputs.metrics["base"]
    return None


def champion_check(inputs: GateInputs, policy: PromotionPolicy) -> Check:
    """A champion that exists must be the one evaluated, unless the policy explicitly waives the comparison."""
    name = "champion_compared"
    if inputs.champion is None:
        if inputs.evaluated_champion is not None:
            return Check(name, False, f"champion v{inputs.evaluated_champion} was evaluated but no version is "
                                      "champion now: the alias moved since evaluation; run again")
        return Check(name, True, "no champion yet: this is the first candidate")
    if inputs.evaluated_champion == inputs.champion:
        return Check(name, True, f"champion v{inputs.champion} evaluated on the same eval set")
    if inputs.evaluated_champion is not None:
        return Check(name, False, f"champion v{inputs.evaluated_champion} was evaluated, but champion is now "
                                  f"v{inputs.champion}: run again to compare with it")
    why = inputs.champion_skipped or "it was not evaluated"
    if policy.allow_without_champion_comparison:
        return Check(name, True, f"champion v{inputs.champion} not compared ({why}); allowed by "
                                 "registry.promotion.allow_without_champion_comparison")
    return Check(name, False, f"champion v{inputs.champion} was not compared ({why}); it can be replaced only after "
                              "a comparison on the same eval set, or with "
                              "registry.promotion.allow_without_champion_comparison: true")


def primary_checks(inputs: GateInputs, policy: PromotionPolicy, metric: str) -> tuple[list[Check], str | None]:
    """The primary metric against the reference, and the absolute threshold when one is set."""
    direction = metric_direction(metric) if policy.direction == "auto" else policy.direction
    name = f"primary {metric}"
    candidate = inputs.metrics.get("candidate", {}).get(metric)
    if candidate is None or direction is None:
        measured = ", ".join(sorted(inputs.metrics.get("candidate", {}))) or "nothing"
        return [Check(name, False, f"registry.promotion.metric {metric} is not measured for this candidate "
                                   f"(measured: {measured})")], None
    found = choose_reference(inputs, metric)
    if found is None or metric not in found[1]:
        against = found[0] if found else "any reference"
        return [Check(name, False, f"{metric} was not measured for {against}: nothing to compare with")], None
    against, reference = found[0], found[1][metric]
    gain = better_by(candidate, reference, direction)
    improvement = relative(gain, reference)
    # an infinite value is no measurement to win by; NaN and a tie fail the comparisons themselves
    passed = math.isfinite(candidate) and math.isfinite(reference) and gain > 0 and improvement >= policy.min_improvement
    checks = [Check(name, passed, f"candidate {metric} {candidate:.4g} vs {against} {reference:.4g}: "
                                  f"{improvement:+.2%} improvement, gate needs at least {policy.min_improvement:.2%}")]
    if policy.threshold is not None:
        bar = "at most" if direction == "lower" else "at least"
        checks.append(Check(f"threshold {metric}", passed and better_by(candidate, policy.threshold, direction) >= 0,
                            f"candidate {metric} {candidate:.4g}, registry.promotion.threshold needs {bar} "
                            f"{policy.threshold:.4g}"))
    return checks, against


def guard_checks(inputs: GateInputs, policy: PromotionPolicy) -> list[Check]:
    """Each guard metric may regress against its reference by at most its limit; an unmeasured guard fails."""
    checks = []
    for guard in policy.guards:
        name = f"guard {guard.metric}"
        direction = metric_direction(guard.metric) if guard.direction == "auto" else guard.direction
        candidate = inputs.metrics.get("candidate", {}).get(guard.metric)
        found = choose_reference(inputs, guard.metric)
        if candidate is None or found is None or guard.metric not in found[1] or direction is None:
            missing = "the candidate" if candidate is None else (found[0] if found else "any reference")
            checks.append(Check(name, False, f"{guard.metric} was not measured for {missing}: the guard can't be "
                                             "checked"))
            continue
        against, reference = found[0], found[1][guard.metric]
        regression = -better_by(candidate, reference, direction)
        if guard.regression == "relative":
            measured, limit = relative(regression, reference), f"{guard.max_regression:.2%}"
            amount = f"{measured:+.2%}"
        else:
            measured, limit, amount = regression, f"{guard.max_regression:.4g}", f"{regression:+.4g}"
        finite = math.isfinite(candidate) and math.isfinite(reference)
        checks.append(Check(name, finite and measured <= guard.max_regression,  # False for NaN
                            f"candidate {guard.metric} {candidate:.4g} vs {against} {reference:.4g}: regression "
                            f"{amount}, allowed at most {limit} ({guard.regression})"))
    return checks


def required_checks(inputs: GateInputs, policy: PromotionPolicy) -> list[Check]:
    checks = []
    if CHECK_VALIDATION in policy.required_checks:
        state = {True: "succeeded", False: "failed", None: "was not recorded in the run"}[inputs.validation_passed]
        checks.append(Check(CHECK_VALIDATION, inputs.validation_passed is True, f"data validation {state}"))
    if CHECK_FINITE in policy.required_checks:
        candidate = inputs.metrics.get("candidate", {})
        bad = sorted(name for name, value in candidate.items() if not math.isfinite(value))
        checks.append(Check(CHECK_FINITE, bool(candidate) and not bad,
                            f"candidate {', '.join(f'{n} is {candidate[n]}' for n in bad)}: training diverged"
                            if bad else f"all {len(candidate)} candidate metrics are finite"))
    return checks


def promotion_decision(inputs: GateInputs, policy: PromotionPolicy) -> PromotionDecision:
    """Every check the policy asks for, each recorded; the candidate is promoted only when all pass."""
    metric = inputs.task_metric if policy.metric == "auto" else policy.metric
    primary, against = primary_checks(inputs, policy, metric)
    checks = [*required_checks(inputs, policy), champion_check(inputs, policy), *primary,
              *guard_checks(inputs, policy)]
    return PromotionDecision(tuple(checks), against)


def majority_class_metrics(labels: Sequence[int]) -> dict[str, float]:
    """Accuracy and macro-F1 (scikit-learn's) of always predicting the most frequent eval label: the bar a
    classifier must clear before it is worth serving. Empty when there are no labels."""
    from sklearn.metrics import accuracy_score, f1_score

    if not len(labels):
        return {}
    counts = Counter(int(label) for label in labels)
    majority = min(counts, key=lambda label: (-counts[label], label))  # the smaller class index on a tie
    predicted = [majority] * len(labels)
    return {"accuracy": float(accuracy_score(labels, predicted)),
            "macro_f1": float(f1_score(labels, predicted, average="macro", zero_division=0))}
