"""The promotion gate as pure functions: should this version become `champion`, and every reason why (not).

Only tasks/promote.py talks to the registry; everything here is a function of metrics, policy and facts.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import NamedTuple

from adapterflow.registry.significance import better_by, missing_examples, paired_bootstrap, relative
from adapterflow.tracking.run import ALIAS_CHAMPION, ALIAS_PREVIOUS_CHAMPION
from schemas.registry import CHECK_FINITE, Direction, PromotionPolicy, metric_direction

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
    # {model or baseline: {value: one per eval example}}: what the confidence bound resamples (significance.py)
    per_example: dict[str, dict[str, list[float]]] = field(default_factory=dict)


def gate_inputs(
    metrics: Mapping[str, Mapping[str, float]], per_example: Mapping[str, Mapping[str, list[float]]],
    task_metric: str, champion: str | None, evaluated_champion: str | None, champion_skipped: str | None,
    baselines: Mapping[str, Mapping[str, float]],
) -> GateInputs:
    """The gate's inputs, built the same way by the pipeline (tasks/promote.py) and `adapterflow promote`
    (registry/versions.py): base, candidate and the champion (only when it was evaluated) with their metrics and
    per-example values, and the baselines, the majority class's per-example values from the candidate's labels."""
    models = ("base", "candidate", *(("champion",) if evaluated_champion is not None else ()))
    examples = {name: dict(per_example[name]) for name in models if per_example.get(name)}
    labels = examples.get("candidate", {}).get("label")
    if MAJORITY in baselines and labels:
        examples[MAJORITY] = majority_class_examples(labels)
    return GateInputs(metrics={name: dict(metrics[name]) for name in models if name in metrics},
                      task_metric=task_metric, champion=champion, evaluated_champion=evaluated_champion,
                      champion_skipped=champion_skipped, per_example=examples,
                      baselines={name: dict(values) for name, values in baselines.items()})


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


class Reference(NamedTuple):
    """The model the candidate is measured against: its name in reasons, its metrics, its key in `per_example`."""

    label: str
    metrics: dict[str, float]
    key: str


def choose_reference(inputs: GateInputs, metric: str) -> Reference | None:
    """The model the candidate must beat on `metric`: the evaluated champion, else the majority-class baseline
    (when it measured `metric`), else the base model; None when none measured it."""
    if inputs.evaluated_champion is not None:  # never the base instead: the champion is the bar once it exists
        return Reference(f"champion v{inputs.evaluated_champion}", inputs.metrics.get("champion", {}), "champion")
    baseline = inputs.baselines.get(MAJORITY, {})
    if metric in baseline:
        return Reference("the majority-class baseline (always the most frequent eval label)", baseline, MAJORITY)
    if "base" in inputs.metrics:
        return Reference("the base model", inputs.metrics["base"], "base")
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
    if found is None or metric not in found.metrics:
        against = found.label if found else "any reference"
        return [Check(name, False, f"{metric} was not measured for {against}: nothing to compare with")], None
    against, reference = found.label, found.metrics[metric]
    if inputs.evaluated_champion is not None and math.isfinite(candidate) and not math.isfinite(reference):
        passed, detail = True, (f"{against} {metric} is {reference}: any finite candidate replaces it (candidate "
                                f"{metric} {candidate:.4g})")
    else:
        passed, detail = compare(inputs, policy, metric, direction, found)
    checks = [Check(name, passed, detail)]
    if policy.threshold is not None:
        bar = "at most" if direction == "lower" else "at least"
        checks.append(Check(f"threshold {metric}", passed and better_by(candidate, policy.threshold, direction) >= 0,
                            f"candidate {metric} {candidate:.4g}, registry.promotion.threshold needs {bar} "
                            f"{policy.threshold:.4g}"))
    return checks, against


def compare(inputs: GateInputs, policy: PromotionPolicy, metric: str, direction: Direction,
            found: Reference) -> tuple[bool, str]:
    """The primary comparison: with `confidence`, the bootstrap's lower bound must reach min_improvement; with
    none, or without per-example values for both sides, the point values must."""
    candidate, reference = inputs.metrics["candidate"][metric], found.metrics[metric]
    gain = better_by(candidate, reference, direction)
    improvement = relative(gain, reference)
    # an infinite value is no measurement to win by; NaN and a tie fail the comparisons themselves
    plausible = math.isfinite(candidate) and math.isfinite(reference) and gain > 0
    values = f"candidate {metric} {candidate:.4g} vs {found.label} {reference:.4g}: {improvement:+.2%} improvement"
    needs = f"gate needs at least {policy.min_improvement:.2%}"
    point = plausible and improvement >= policy.min_improvement
    if policy.confidence is None:
        return point, f"{values}, {needs}"
    ours, theirs = inputs.per_example.get("candidate"), inputs.per_example.get(found.key)
    why = missing_examples(metric, ours, theirs, found.label)
    if why is not None:
        return point, f"{values}, {needs} (point comparison: {why})"
    interval = paired_bootstrap(metric, ours, theirs, direction, policy.confidence)
    bound = (f"{policy.confidence * 100:g}% lower bound {interval.lower:+.2%} on {interval.examples} examples (this "
             f"eval size detects about {interval.detectable:.2%})")
    return plausible and interval.lower >= policy.min_improvement, f"{values}, {bound}, {needs}"


def guard_checks(inputs: GateInputs, policy: PromotionPolicy) -> list[Check]:
    """Each guard metric may regress against its reference by at most its limit; an unmeasured guard fails."""
    checks = []
    for guard in policy.guards:
        name = f"guard {guard.metric}"
        direction = metric_direction(guard.metric) if guard.direction == "auto" else guard.direction
        candidate = inputs.metrics.get("candidate", {}).get(guard.metric)
        found = choose_reference(inputs, guard.metric)
        if candidate is None or found is None or guard.metric not in found.metrics or direction is None:
            missing = "the candidate" if candidate is None else (found.label if found else "any reference")
            checks.append(Check(name, False, f"{guard.metric} was not measured for {missing}: the guard can't be "
                                             "checked"))
            continue
        against, reference = found.label, found.metrics[guard.metric]
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
    predicted = [majority_label(labels)] * len(labels)
    return {"accuracy": float(accuracy_score(labels, predicted)),
            "macro_f1": float(f1_score(labels, predicted, average="macro", zero_division=0))}


def majority_label(labels: Sequence[float]) -> int:
    """The most frequent label; the smaller class index on a tie."""
    counts = Counter(int(label) for label in labels)
    return min(counts, key=lambda label: (-counts[label], label))


def majority_class_examples(labels: Sequence[float]) -> dict[str, list[float]]:
    """The majority-class baseline's per-example values on these eval labels, like a classifier's."""
    majority = majority_label(labels)
    return {"label": [float(label) for label in labels], "predicted": [float(majority)] * len(labels),
            "correct": [float(int(label) == majority) for label in labels]}
