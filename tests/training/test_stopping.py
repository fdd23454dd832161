"""The rules that decide when training stops: validation cadence, improvement, the budget plan, durations."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from adapterflow.training.stopping import (
    StoppingState,
    auto_eval_steps,
    improves,
    planned_steps,
    stop_reason_for_patience,
)
from schemas.training import TrainingConfig


def test_auto_eval_steps_keeps_validation_near_its_share_of_training_time() -> None:
    assert auto_eval_steps(validation_seconds=8.0, seconds_per_step=1.0) == 100  # 8s per 100s of steps: 8%
    assert auto_eval_steps(validation_seconds=0.01, seconds_per_step=1.0) == 1  # cheap: every step
    assert auto_eval_steps(validation_seconds=3.0, seconds_per_step=0.5, share=0.1) == 60


def test_improvement_needs_more_than_min_delta_and_a_finite_loss() -> None:
    assert improves(2.0, None, 0.0)
    assert improves(1.9, 2.0, 0.05) and not improves(1.96, 2.0, 0.05)
    assert not improves(2.0, 2.0, 0.0)  # equal is no improvement: the earlier step is kept
    assert not improves(float("nan"), None, 0.0) and not improves(float("inf"), 2.0, 0.0)


def test_the_plan_fits_steps_and_their_validation_into_the_budget_within_the_bounds() -> None:
    # 600s budget, 40s gone at step 5, 1.5s per step, a 10s validation every 20 steps, one more at the end:
    # (600 - 40 - 10) / (1.5 + 10/20) = 275 steps more
    assert planned_steps(600, 40, 5, 1.5, 10.0, 20, upper_bound=10_000) == 280
    assert planned_steps(600, 40, 5, 1.5, 10.0, 20, upper_bound=100) == 100  # epochs/max_steps stay the bound
    assert planned_steps(60, 70, 5, 1.5, 10.0, 20, upper_bound=100) == 6  # already over: at least the next step


def test_patience_counts_measurements_in_a_row() -> None:
    state = StoppingState(best_step=40, best_loss=1.23456, measurements_without_improvement=2)
    assert stop_reason_for_patience(state, 3) is None
    state.measurements_without_improvement = 3
    assert stop_reason_for_patience(state, 3) == \
        "early stopping: val/loss did not improve for 3 measurements (best 1.2346 at step 40)"


def test_the_stopping_state_survives_a_checkpoint(tmp_path) -> None:  # noqa: ANN001
    state = StoppingState(eval_steps=7, best_step=14, best_loss=0.5, measurements_without_improvement=1,
                          planned_steps=90, seconds_per_step=0.25, elapsed_seconds=12.5)
    state.save(tmp_path)
    assert StoppingState.load(tmp_path) == state
    assert StoppingState.load(tmp_path / "none") == StoppingState() and StoppingState.load(None) == StoppingState()


def test_time_budget_reads_durations_and_refuses_what_is_none() -> None:
    assert TrainingConfig(time_budget="20m").time_budget == 1200
    assert TrainingConfig(time_budget="1h30m").time_budget == 5400
    assert TrainingConfig(time_budget="45s").time_budget == 45 and TrainingConfig(time_budget=90).time_budget == 90
    with pytest.raises(ValidationError, match="is no duration: write it like 90s, 20m or 1h30m"):
        TrainingConfig(time_budget="soon")
    with pytest.raises(ValidationError, match="eval_steps must be at least 1"):
        TrainingConfig(eval_steps=0)
