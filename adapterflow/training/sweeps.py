"""Optuna for `adapterflow sweep`: the study a sweep config asks for, the values a trial draws, and the outcome of
each trial as the sweep records it."""

from __future__ import annotations

import logging
import math
from typing import Any

import optuna

from adapterflow.storage.records import TrialOutcome
from schemas.sweep import SearchChoices, SearchRange, SweepConfig

OPTUNA_STATES = {"complete": optuna.trial.TrialState.COMPLETE, "pruned": optuna.trial.TrialState.PRUNED,
                 "failed": optuna.trial.TrialState.FAIL}


def random_start(trials: int) -> int:
    """Trials TPE draws at random before it models the results: a third of the sweep, at least 2 (Optuna's default
    of 10 would leave a sweep of 8 all random)."""
    return max(2, trials // 3)


def make_study(sweep: SweepConfig, trials: int) -> optuna.Study:
    """An in-memory study of `trials` trials that minimises the validation loss, seeded, with the configured sampler and
    pruner."""
    optuna.logging.set_verbosity(logging.WARNING)  # the sweep logs each trial itself, in its own words
    sampler = (optuna.samplers.TPESampler(seed=sweep.seed, n_startup_trials=random_start(trials))
               if sweep.sampler == "tpe" else optuna.samplers.RandomSampler(seed=sweep.seed))
    pruner = (optuna.pruners.MedianPruner(n_startup_trials=sweep.startup_trials) if sweep.pruner == "median"
              else optuna.pruners.NopPruner())
    return optuna.create_study(direction="minimize", sampler=sampler, pruner=pruner)


def suggest_values(trial: optuna.Trial, parameters: dict[str, SearchRange | SearchChoices]) -> dict[str, Any]:
    """Draw one value per searched setting (the dotted setting is the Optuna parameter name)."""
    values: dict[str, Any] = {}
    for path, space in parameters.items():
        if isinstance(space, SearchChoices):
            values[path] = trial.suggest_categorical(path, space.choices)
        elif space.integer:
            values[path] = trial.suggest_int(path, int(space.low), int(space.high), step=int(space.step or 1),
                                             log=space.log)
        else:
            values[path] = trial.suggest_float(path, space.low, space.high, step=space.step, log=space.log)
    return values


def record_outcome(study: optuna.Study, trial: optuna.Trial, outcome: TrialOutcome) -> None:
    """Tell the study how the trial ended: the sampler learns from complete trials, the pruner from every report."""
    study.tell(trial, outcome.loss if outcome.state == "complete" else None, state=OPTUNA_STATES[outcome.state])


def best_outcome(outcomes: list[TrialOutcome]) -> TrialOutcome | None:
    """The complete trial with the lowest finite validation loss (the earliest among equals); None when none completed."""
    complete = [outcome for outcome in outcomes if outcome.state == "complete" and math.isfinite(outcome.loss)]
    return min(complete, key=lambda outcome: (outcome.loss, outcome.number)) if complete else None
