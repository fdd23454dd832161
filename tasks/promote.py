"""Promote: move `champion` to the new version only when the policy's every check passes (adapterflow/registry/promotion.py)."""

from __future__ import annotations

from mlflow.tracking import MlflowClient

from adapterflow.core.logs import stage_logger
from adapterflow.orchestration.stage import stage
from adapterflow.registry.client import alias_version, move_champion_if_unchanged
from adapterflow.registry.drift_guard import drift_scores_from_metrics, with_drift_checks
from adapterflow.registry.promotion import Check, PromotionDecision, gate_inputs, promotion_aliases, promotion_decision
from adapterflow.storage.records import EvalResult, PromotionResult, RegisteredVersion, RunContext
from adapterflow.tracking.run import (
    ALIAS_CHAMPION,
    TAG_PROMOTION,
    TAG_PROMOTION_REASONS,
    RunTracker,
)
from schemas.registry import PromotionPolicy


def champion_moved(evaluated: str | None, now: str | None, version: str) -> Check:
    """The failed check of a champion that moved between the decision and the alias move."""
    def named(value: str | None) -> str:
        return f"v{value}" if value else "no champion"

    return Check("champion_unchanged", False, f"champion was {named(evaluated)} at the decision and "
                                              f"{named(now)} right before the move: not moved, v{version} stays "
                                              "challenger; run again to compare with the new champion")


def tag_version(client: MlflowClient, registered: RegisteredVersion, decision: PromotionDecision) -> None:
    client.set_model_version_tag(registered.model_name, registered.version, TAG_PROMOTION, decision.reason)
    client.set_model_version_tag(registered.model_name, registered.version, TAG_PROMOTION_REASONS,
                                 "\n".join(decision.reasons))


def log_to_run(run: RunContext, promoted: bool, reason: str, reasons: list[str]) -> None:
    tracker = RunTracker(run.mlflow_run_id)
    tracker.log_metrics({"registry/promoted": float(promoted)})
    tracker.set_tags({TAG_PROMOTION: reason, TAG_PROMOTION_REASONS: "\n".join(reasons)})


@stage("promote", retries=3, retry_delay_seconds=5)
def promote(registered: RegisteredVersion, evaluation: EvalResult, policy: PromotionPolicy, run: RunContext) -> PromotionResult:
    """Decide with the registry's state read now, move `champion` only if it is still the version evaluated,
    and record every reason on the version and the run."""
    client = MlflowClient()
    name, version = registered.model_name, registered.version
    current = alias_version(client, name, ALIAS_CHAMPION)
    if registered.identical:  # no new version: the existing one was gated when it was registered
        reason = f"not promoted: no new version, the adapter is identical to v{version}"
        result = PromotionResult(promoted=False, reason=reason, reasons=[reason], aliases={})
    elif current == version and evaluation.champion_version != version:  # a retry after this stage moved it
        tags = client.get_model_version(name, version).tags
        reason = tags.get(TAG_PROMOTION, f"v{version} was made champion after evaluation")
        result = PromotionResult(promoted=True, reason=reason, aliases={},
                                 reasons=tags.get(TAG_PROMOTION_REASONS, reason).splitlines())
    else:
        result = decide_and_move(client, registered, evaluation, policy, run, current)
    log_to_run(run, result.promoted, result.reason, result.reasons)
    aliases = {alias: str(v) for alias, v in client.get_registered_model(name).aliases.items()}
    return result.model_copy(update={"aliases": aliases})


def decide_and_move(
    client: MlflowClient, registered: RegisteredVersion, evaluation: EvalResult, policy: PromotionPolicy,
    run: RunContext, current: str | None,
) -> PromotionResult:
    """The decision on the registry's state read now; the alias moves only if champion is still `current`.
    The version is tagged before the move, so a retry after the move finds the decision."""
    run_metrics = client.get_run(run.mlflow_run_id).data.metrics
    inputs = gate_inputs(evaluation.metrics, evaluation.per_example, evaluation.primary_metric, current,
                         evaluation.champion_version, evaluation.champion_skipped, evaluation.baselines)
    decision = with_drift_checks(promotion_decision(inputs, policy), drift_scores_from_metrics(run_metrics),
                                 policy.max_drift)
    tag_version(client, registered, decision)
    if decision.promote:
        moved, now = move_champion_if_unchanged(client, registered.model_name, current,
                                                promotion_aliases(registered.version, current), decision.reason)
        if not moved:
            decision = decision.blocked(champion_moved(current, now, registered.version))
            tag_version(client, registered, decision)
    logger = stage_logger()
    for line in decision.reasons:
        logger.info(line)
    logger.info(decision.reason)
    return PromotionResult(promoted=decision.promote, reason=decision.reason, reasons=decision.reasons, aliases={})
