"""The drift guard of the promotion gate: hold a candidate whose training data drifted from the champion's more
than registry.promotion.max_drift allows, feature by feature (scores: adapterflow/data/drift.py)."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import replace

from adapterflow.data.drift import DRIFT_METRIC_PREFIX, NO_CHAMPION_PROFILE
from adapterflow.registry.promotion import Check, PromotionDecision


def drift_scores_from_metrics(metrics: Mapping[str, float]) -> dict[str, float]:
    """The drift scores a run logged as drift/<feature> metrics (empty: nothing was compared)."""
    return {key.removeprefix(DRIFT_METRIC_PREFIX): value for key, value in metrics.items()
            if key.startswith(DRIFT_METRIC_PREFIX)}


def drift_checks(scores: Mapping[str, float], limits: Mapping[str, float] | None) -> list[Check]:
    """One check per limited feature: its score against the champion's data at most its limit. Without scores
    (no champion, or a champion without a profile) there is nothing to hold on, and the check says so."""
    if not limits:
        return []
    if not scores:
        return [Check("drift", True, f"{NO_CHAMPION_PROFILE}: registry.promotion.max_drift not applied")]
    checks = []
    for feature, limit in limits.items():
        score = scores.get(feature)
        if score is None:
            checks.append(Check(f"drift {feature}", False, f"{feature} drift was not measured: its limit {limit:.4g} "
                                                           "in registry.promotion.max_drift can't be checked"))
            continue
        checks.append(Check(f"drift {feature}", math.isfinite(score) and score <= limit,
                            f"{feature} drift {score:.4g} against the champion's training data, "
                            f"registry.promotion.max_drift allows at most {limit:.4g}"))
    return checks


def with_drift_checks(decision: PromotionDecision, scores: Mapping[str, float],
                      limits: Mapping[str, float] | None) -> PromotionDecision:
    """The decision with the drift checks appended: any failed one holds the promotion."""
    return replace(decision, checks=(*decision.checks, *drift_checks(scores, limits)))
