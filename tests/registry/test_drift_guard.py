"""The drift guard (registry.promotion.max_drift) as a pure function and in the promote task, and the drift stage
against a champion whose run logged no profile."""

from __future__ import annotations

from pathlib import Path

from adapterflow.data.drift import NO_CHAMPION_PROFILE, drift_metric
from adapterflow.registry.drift_guard import drift_checks, drift_scores_from_metrics, with_drift_checks
from adapterflow.registry.promotion import Check, PromotionDecision
from adapterflow.data.tables import TableWriter
from adapterflow.storage.records import SplitResult
from schemas.registry import PromotionPolicy
from tasks.drift import PROFILE_ARTIFACT, drift_since_champion
from tasks.promote import promote
from tests.registry.test_promotion_gate import V3, artifact, evaluation, reasons, registry  # noqa: F401 - fixtures

PASSING = PromotionDecision((Check("primary perplexity", True, "candidate 8 vs champion v1 10"),), "champion v1")


def test_a_score_above_its_limit_holds_the_promotion_and_names_the_feature_and_both_numbers() -> None:
    decision = with_drift_checks(PASSING, {"vocabulary": 0.31, "rows_added": 0.05}, {"vocabulary": 0.1,
                                                                                     "rows_added": 0.5})
    assert not decision.promote
    assert decision.reason == ("not promoted: vocabulary drift 0.31 against the champion's training data, "
                               "registry.promotion.max_drift allows at most 0.1")
    assert "pass drift rows_added: rows_added drift 0.05" in "\n".join(decision.reasons)


def test_scores_within_their_limits_or_no_limits_leave_the_decision_alone() -> None:
    assert with_drift_checks(PASSING, {"vocabulary": 0.1}, {"vocabulary": 0.1}).promote  # at the limit: allowed
    assert with_drift_checks(PASSING, {"vocabulary": 0.9}, None) == PASSING
    assert drift_checks({"vocabulary": float("nan")}, {"vocabulary": 1.0})[0].passed is False


def test_without_a_champion_profile_the_guard_passes_and_says_why() -> None:
    (check,) = drift_checks({}, {"vocabulary": 0.1})
    assert check.passed and NO_CHAMPION_PROFILE in check.detail


def test_scores_are_read_back_from_the_run_metrics() -> None:
    metrics = {drift_metric("vocabulary"): 0.2, "data/validation_success": 1.0}
    assert drift_scores_from_metrics(metrics) == {"vocabulary": 0.2}


def test_the_promote_task_holds_a_candidate_whose_data_drifted_too_far(registry) -> None:  # noqa: F811
    client, run = registry
    client.log_metric(run.mlflow_run_id, drift_metric("answer_length"), 0.42)
    held = promote.fn(V3, evaluation(8.0), PromotionPolicy(max_drift={"answer_length": 0.2}), run)
    assert not held.promoted and held.aliases["champion"] == "1"
    assert "answer_length drift 0.42" in held.reason and "at most 0.2" in held.reason
    assert "FAIL drift answer_length" in reasons(client)
    assert promote.fn(V3, evaluation(8.0), PromotionPolicy(max_drift={"answer_length": 0.5}), run).promoted


def test_a_champion_whose_run_logged_no_profile_gives_a_report_that_says_so(  # noqa: F811
    registry, tmp_path: Path,
) -> None:
    client, run = registry  # champion v1's run logged no profile
    with TableWriter(tmp_path / "train.parquet", "sft") as writer:
        writer.write({"messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}],
                      "source": "s.jsonl", "line": 1})
        train = writer.close()
    split = SplitResult(train=train, eval=train, fingerprint="f", uri="u", eval_set="e")
    result = drift_since_champion(split, {}, "m", run, client)
    assert result.champion_version is None and result.report["note"] == NO_CHAMPION_PROFILE
    logged = {item.path for item in client.list_artifacts(run.mlflow_run_id, "data")}
    assert {PROFILE_ARTIFACT, "data/drift.json", "data/drift.md"} <= logged
