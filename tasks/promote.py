"""Promote: move `champion` to the new version only when it beats the current champion (or the base)."""

from __future__ import annotations

import math
from dataclasses import dataclass

from mlflow.tracking import MlflowClient

from adapterflow.records import EvalResult, PromotionResult, RegisteredVersion, RunContext
from adapterflow.registry import set_aliases
from adapterflow.registry.client import alias_version
from adapterflow.stage import stage, stage_logger
from adapterflow.tracking import ALIAS_CHAMPION, ALIAS_PREVIOUS_CHAMPION, RunTracker
from schemas.registry import HIGHER_IS_BETTER, PromotionPolicy


@dataclass(frozen=True)
class PromotionDecision:
    promote: bool
    reason: str


def decide_promotion(
    metrics: dict[str, dict[str, float]], policy: PromotionPolicy, champion_version: str | None,
    task_metric: str = "perplexity",
) -> PromotionDecision:
    """Pure gate: the candidate must improve the metric by the relative margin (lower perplexity and loss,
    higher accuracy and macro-F1). `task_metric` is the metric of policy `auto`."""
    metric = task_metric if policy.metric == "auto" else policy.metric
    if metric not in metrics["candidate"]:
        return PromotionDecision(False, f"registry.promotion.metric {metric} is not measured for this task "
                                        f"(measured: {', '.join(sorted(metrics['candidate']))})")
    sign = -1.0 if metric in HIGHER_IS_BETTER else 1.0
    candidate = metrics["candidate"][metric]
    if champion_version is not None and "champion" in metrics:
        reference, against = metrics["champion"][metric], f"champion v{champion_version}"
    else:
        reference, against = metrics["base"][metric], "the base model"
    if not math.isfinite(candidate):
        return PromotionDecision(False, f"candidate {metric} is {candidate}: training diverged")
    gain = sign * (reference - candidate)  # positive when the candidate is better
    improvement = gain / abs(reference) if reference else (math.inf if gain > 0 else 0.0)
    comparison = (f"candidate {metric} {candidate:.4g} vs {against} {reference:.4g}: "
                  f"{improvement:+.2%} improvement, gate needs at least {policy.min_improvement:.2%}")
    promote = improvement >= policy.min_improvement and gain > 0
    return PromotionDecision(promote, ("promoted: " if promote else "not promoted: ") + comparison)


def promotion_aliases(new_version: str, current_champion: str | None) -> dict[str, str]:
    """Aliases to set on promotion; the old champion stays reachable for rollback."""
    aliases = {ALIAS_CHAMPION: new_version}
    if current_champion is not None and current_champion != new_version:
        aliases[ALIAS_PREVIOUS_CHAMPION] = current_champion
    return aliases


@stage("promote", retries=3, retry_delay_seconds=5)
def promote(registered: RegisteredVersion, evaluation: EvalResult, policy: PromotionPolicy, run: RunContext) -> PromotionResult:
    """Apply the gate and move the aliases it allows; log the decision."""
    client = MlflowClient()
    name = registered.model_name
    current = alias_version(client, name, ALIAS_CHAMPION)
    decision = decide_promotion(evaluation.metrics, policy, evaluation.champion_version, evaluation.primary_metric)
    if decision.promote:
        set_aliases(client, name, promotion_aliases(registered.version, current))
    client.set_model_version_tag(name, registered.version, "adapterflow.promotion", decision.reason)
    tracker = RunTracker(run.mlflow_run_id)
    tracker.log_metrics({"registry/promoted": float(decision.promote)})
    tracker.set_tags({"adapterflow.promotion": decision.reason})
    aliases = {alias: str(version) for alias, version in client.get_registered_model(name).aliases.items()}
    stage_logger().info(decision.reason)
    return PromotionResult(promoted=decision.promote, reason=decision.reason, aliases=aliases)
