"""Optuna glue: values drawn in the declared types and ranges, reproducible by seed, and the best trial chosen."""

from __future__ import annotations

import optuna

from adapterflow.storage.records import TrialOutcome
from adapterflow.training.sweeps import best_outcome, make_study, random_start, record_outcome, suggest_values
from schemas.sweep import SweepConfig

SWEEP = SweepConfig(parameters={
    "training.learning_rate": {"low": 1e-5, "high": 1e-2, "log": True},
    "method.r": {"low": 4, "high": 32, "step": 4},
    "method.dropout": {"choices": [0.0, 0.1]},
}, seed=3)


def draws(sweep: SweepConfig, count: int) -> list[dict]:
    study = make_study(sweep, count)
    values = []
    for number in range(count):
        trial = study.ask()
        values.append(suggest_values(trial, sweep.parameters))
        record_outcome(study, trial, TrialOutcome(number=number, values=values[-1], state="complete",
                                                  loss=float(values[-1]["training.learning_rate"]), mlflow_run_id="r"))
    return values


def test_values_come_in_the_declared_types_and_ranges() -> None:
    for values in draws(SWEEP, 12):
        assert isinstance(values["training.learning_rate"], float) and 1e-5 <= values["training.learning_rate"] <= 1e-2
        assert isinstance(values["method.r"], int) and values["method.r"] in range(4, 33, 4)
        assert values["method.dropout"] in (0.0, 0.1)


def test_the_same_seed_draws_the_same_trials_and_another_does_not() -> None:
    assert draws(SWEEP, 6) == draws(SWEEP, 6)
    assert draws(SWEEP, 6) != draws(SWEEP.model_copy(update={"seed": 4}), 6)


def pruned_when_behind(sweep: SweepConfig) -> bool:
    """Two trials complete with eval loss 1.0 and 2.0 at step 5; whether a third at 3.0 there is pruned (one at
    1.2, ahead of the median, never is)."""
    study = make_study(sweep, 4)
    for number, loss in enumerate([1.0, 2.0]):
        trial = study.ask()
        trial.report(loss, 5)
        assert not trial.should_prune()  # startup trials always complete
        record_outcome(study, trial, TrialOutcome(number=number, values={}, state="complete", loss=loss,
                                                  mlflow_run_id="r"))
    behind, ahead = study.ask(), study.ask()
    behind.report(3.0, 5)
    ahead.report(1.2, 5)
    assert not ahead.should_prune()
    return behind.should_prune()


def test_the_median_pruner_stops_a_trial_behind_the_median_after_the_startup_trials() -> None:
    assert pruned_when_behind(SweepConfig(parameters={"method.r": {"choices": [4]}}, startup_trials=2))
    assert not pruned_when_behind(SweepConfig(parameters={"method.r": {"choices": [4]}}, pruner="none"))


def test_the_best_trial_is_the_complete_one_with_the_lowest_loss() -> None:
    outcomes = [TrialOutcome(number=0, values={}, state="complete", loss=2.0, mlflow_run_id="a"),
                TrialOutcome(number=1, values={}, state="pruned", loss=1.0, step=3, mlflow_run_id="b"),
                TrialOutcome(number=2, values={}, state="failed", mlflow_run_id="c"),
                TrialOutcome(number=3, values={}, state="complete", loss=1.5, mlflow_run_id="d"),
                TrialOutcome(number=4, values={}, state="complete", loss=1.5, mlflow_run_id="e")]
    assert best_outcome(outcomes).number == 3  # a pruned trial's early loss doesn't count; ties go to the earlier
    not_finite = TrialOutcome(number=5, values={}, state="complete", loss=float("nan"), mlflow_run_id="f")
    assert best_outcome([not_finite, *outcomes]).number == 3 and best_outcome([not_finite]) is None
    assert best_outcome(outcomes[1:3]) is None
    assert isinstance(make_study(SWEEP, 8).sampler, optuna.samplers.TPESampler)


def test_tpe_models_the_results_after_a_third_of_the_trials_not_after_optunas_ten() -> None:
    assert [random_start(trials) for trials in (1, 4, 6, 8, 30)] == [2, 2, 2, 2, 10]
