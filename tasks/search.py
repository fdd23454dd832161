"""Search: train one trial per set of drawn hyperparameters, each in a nested MLflow run under the sweep's run and
judged by its validation loss (at the step it keeps: the best one under early stopping, else the last); Optuna's
pruner stops trials that fall behind on the way. The eval set is left for evaluate, which judges the winner."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import optuna
import torch
import yaml
from mlflow.entities import RunStatus
from mlflow.tracking import MlflowClient
from mlflow.utils.mlflow_tags import MLFLOW_PARENT_RUN_ID
from pydantic import ValidationError

from adapterflow.core.devices import select_device, select_device_and_precision
from adapterflow.core.errors import AdapterflowError, NumericalFault
from adapterflow.core.logs import stage_logger
from adapterflow.evaluation.stored_adapters import load_stored_adapter
from adapterflow.orchestration.stage import stage
from adapterflow.storage.records import BaseModelRef, RunContext, SearchResult, TokenizedData, TrainResult, TrialOutcome
from adapterflow.storage.store import Storage, run_storage
from adapterflow.tokenization.dataset import TokenDataset
from adapterflow.tracking.run import (
    TAG_CODE_VERSION,
    TAG_CONFIG_SHA,
    TAG_RUN_KIND,
    RunTracker,
    code_version,
    flatten_params,
)
from adapterflow.training.probe import HeldOutProbe, TrainingPruned, held_out_loss
from adapterflow.training.sweeps import best_outcome, make_study, record_outcome, suggest_values
from adapterflow.training.trainer import free_accelerator_memory
from schemas.pipeline import PipelineConfig
from schemas.problems import validation_problems
from schemas.sweep import apply_values
from tasks.track import config_sha256
from tasks.train import train_or_reuse

TAG_TRIAL = "adapterflow.trial"  # the trial's number in its sweep
TAG_TRIAL_STATE = "adapterflow.trial_state"  # complete | pruned | failed
TAG_TRIAL_REASON = "adapterflow.trial_reason"
TAG_BEST_RUN = "adapterflow.best_trial_run_id"  # on the sweep's run
TRIALS_ARTIFACT = "sweep/trials.json"
BEST_CONFIG = "best_config.yaml"  # in the run folder, and under sweep/ in the MLflow run
LOSS = "val/loss"  # what the trial's training logs at each validation measurement


def trial_config(config: PipelineConfig, values: dict[str, Any]) -> PipelineConfig:
    """What a trial trains with: the drawn values, and no checkpoints (a trial is short; a crash reruns it)."""
    return apply_values(config, values | {"training.checkpoint_steps": None})


def trial_fault(error: AdapterflowError) -> bool:
    """Failures that belong to the drawn values (a learning rate that diverges, a batch that can't fit): the trial
    fails and the sweep goes on. Anything else (data, environment) stops the sweep."""
    return isinstance(error, NumericalFault) or isinstance(error.__cause__, torch.OutOfMemoryError)


def open_trial_run(client: MlflowClient, parent: RunContext, number: int, config: PipelineConfig | None,
                   values: dict[str, Any]) -> RunTracker:
    """A nested MLflow run under the sweep's run, with the trial's whole config as params (redacted); only the
    drawn values when they make no valid config."""
    experiment_id = client.get_run(parent.mlflow_run_id).info.experiment_id
    tags = {MLFLOW_PARENT_RUN_ID: parent.mlflow_run_id, TAG_RUN_KIND: "sweep-trial", TAG_TRIAL: str(number),
            TAG_CODE_VERSION: code_version()}
    if config is not None:
        tags[TAG_CONFIG_SHA] = config_sha256(config)
    run_id = client.create_run(experiment_id, run_name=f"{parent.run_name}-trial-{number}", tags=tags).info.run_id
    tracker = RunTracker(run_id, client, parent.pii)
    params = tracker.redactor.value(config.model_dump(mode="json")) if config is not None else values
    tracker.log_params(flatten_params(params))
    return tracker


def end_trial_run(tracker: RunTracker, outcome: TrialOutcome) -> None:
    """Tag the trial's run with how it ended, deliver its metrics and close it (failed trials as FAILED)."""
    tracker.set_tags({TAG_TRIAL_STATE: outcome.state, **({TAG_TRIAL_REASON: outcome.reason} if outcome.reason else {})})
    tracker.flush_metrics()  # on a GPU worker an outage's buffer lives on that machine: deliver it now
    status = RunStatus.FAILED if outcome.state == "failed" else RunStatus.FINISHED
    tracker.client.set_terminated(tracker.run_id, RunStatus.to_string(status))


def stored_adapter_loss(trained: TrainResult, tokenized: TokenizedData, base: BaseModelRef, config: PipelineConfig,
                        storage: Storage) -> float:
    """The validation loss of an adapter reused from the store (its training measured none now)."""
    device, precision = select_device_and_precision(config.execution.device, config.training.precision)
    loaded = load_stored_adapter(storage.fetch(trained.uri) / "adapter", base.path, device)
    dataset = TokenDataset(storage.fetch(tokenized.uri) / "validation.parquet")
    return held_out_loss(loaded.model, dataset, tokenized.task, loaded.tokenizer.pad_token_id,
                         config.evaluation.batch_size, device, precision, packed=loaded.packed)


def run_trial(
    trial: optuna.Trial, tokenized: TokenizedData, base: BaseModelRef, config: PipelineConfig, parent: RunContext,
    client: MlflowClient,
) -> TrialOutcome:
    """Train one trial with the probe reporting its validation loss to the study; its MLflow run ends with its
    state."""
    values = suggest_values(trial, config.sweep.parameters)
    try:
        trained_with, invalid = trial_config(config, values), None
    except ValidationError as error:  # settings valid one by one, not together (e.g. AdaLoRA's target_r > init_r)
        trained_with = None
        invalid = f"the drawn values make no valid config: {validation_problems(error, PipelineConfig)}"
    tracker = open_trial_run(client, parent, trial.number, trained_with, values)
    outcome = TrialOutcome(number=trial.number, values=values, state="complete", mlflow_run_id=tracker.run_id)
    if trained_with is None:
        outcome = outcome.model_copy(update={"state": "failed", "reason": invalid})
    else:
        try:
            outcome = train_trial(trial, outcome, tokenized, base, trained_with, parent, tracker,
                                  config.sweep.eval_steps)
        except TrainingPruned as pruned:
            stopped = {"state": "pruned", "loss": pruned.loss, "step": pruned.step,
                       "reason": "worse than the median of earlier trials at that step"}
            if not math.isfinite(pruned.loss):
                stopped = {"state": "failed", "step": pruned.step,
                           "reason": f"validation loss {pruned.loss} is not finite"}
            outcome = outcome.model_copy(update=stopped)
        except AdapterflowError as error:
            if not trial_fault(error):
                client.set_terminated(tracker.run_id, RunStatus.to_string(RunStatus.FAILED))
                raise
            outcome = outcome.model_copy(update={"state": "failed", "reason": tracker.redactor.text(str(error))})
        except BaseException as error:  # a bug, or Ctrl-C (KILLED, as MLflow names it): the run can't stay RUNNING
            status = RunStatus.KILLED if isinstance(error, KeyboardInterrupt) else RunStatus.FAILED
            client.set_terminated(tracker.run_id, RunStatus.to_string(status))
            raise
        finally:
            free_accelerator_memory(select_device(config.execution.device))
    end_trial_run(tracker, outcome)
    return outcome


def train_trial(
    trial: optuna.Trial, outcome: TrialOutcome, tokenized: TokenizedData, base: BaseModelRef, config: PipelineConfig,
    parent: RunContext, tracker: RunTracker, eval_steps: int,
) -> TrialOutcome:
    """Train (or reuse) the trial's adapter, `config`, while the probe reports its validation loss every
    `eval_steps`; the outcome at the step it keeps. Raises TrainingPruned when the pruner (or a loss that is not
    finite) stops it."""
    storage = run_storage(parent)

    def report(step: int, loss: float) -> bool:  # training logs the loss itself, as val/loss
        if not math.isfinite(loss):
            return True
        trial.report(loss, step)
        return trial.should_prune()

    probe = HeldOutProbe(eval_steps, report, config.evaluation.batch_size)
    trained = train_or_reuse(tokenized, base, config, storage, tracker, probe)
    if probe.history:
        step, loss = kept_measurement(probe, trained)
    else:  # reused from the store: measured now, logged at the step it kept
        step = int(trained.metrics.get("train/kept_step", trained.metrics["train/steps"]))
        loss = stored_adapter_loss(trained, tokenized, base, config, storage)
        tracker.log_metrics({LOSS: loss}, step=step)
    if not math.isfinite(loss):
        return outcome.model_copy(update={"state": "failed", "step": step,
                                          "reason": f"validation loss {loss} is not finite"})
    tracker.log_metrics(trained.metrics)
    return outcome.model_copy(update={"loss": loss, "step": step})


def kept_measurement(probe: HeldOutProbe, trained: TrainResult) -> tuple[int, float]:
    """The (step, validation loss) of the weights the trial kept: the best step under early stopping, else the
    last (always measured)."""
    kept = int(trained.metrics.get("train/kept_step", trained.metrics["train/steps"]))
    return next(((step, loss) for step, loss in reversed(probe.history) if step == kept), probe.history[-1])


def describe(outcome: TrialOutcome) -> str:
    drawn = ", ".join(f"{path}={value:.3g}" if isinstance(value, float) else f"{path}={value}"
                      for path, value in outcome.values.items())
    result = f"validation loss {outcome.loss:.4f} at step {outcome.step}" if outcome.loss is not None else ""
    return f"trial {outcome.number} {outcome.state} ({drawn}): " + "; ".join(filter(None, [result, outcome.reason]))


def search_trials(tokenized: TokenizedData, base: BaseModelRef, config: PipelineConfig, trials: int,
                  run: RunContext) -> SearchResult:
    """Run `trials` trials in the sweep's MLflow run; the best complete one, or an error when none completed."""
    if tokenized.validation_rows == 0:
        raise AdapterflowError(
            "a sweep judges and prunes its trials on the validation split, and this data has none (the split "
            "stage's log says why): the eval set is kept for evaluate",
            hint="give validation rows with data.split.validation_size (a share of train, or a count) and "
                 "min_validation_rows, or add data")
    client = MlflowClient()
    parent = RunTracker.for_run(run, client)
    study = make_study(config.sweep, trials)
    outcomes: list[TrialOutcome] = []
    for _ in range(trials):
        trial = study.ask()
        outcome = run_trial(trial, tokenized, base, config, run, client)
        record_outcome(study, trial, outcome)
        outcomes.append(outcome)
        stage_logger().info("%s", describe(outcome))
        # the sweep's run shows every trial so far: a sweep stopped half-way keeps what it found
        parent.log_dict([outcome.model_dump(mode="json") for outcome in outcomes], TRIALS_ARTIFACT)
        if outcome.loss is not None:
            parent.log_metrics({"sweep/trial_loss": outcome.loss}, step=outcome.number)
        if best_outcome(outcomes) is outcome:
            parent.set_tags({TAG_BEST_RUN: outcome.mlflow_run_id})
    counts = {state: sum(outcome.state == state for outcome in outcomes) for state in ("complete", "pruned", "failed")}
    parent.log_metrics({f"sweep/trials_{state}": float(count) for state, count in counts.items()})
    best = best_outcome(outcomes)
    if best is None:
        raise AdapterflowError(
            f"no trial of {trials} completed ({counts['pruned']} pruned, {counts['failed']} failed): "
            + "; ".join(describe(outcome) for outcome in outcomes),
            hint="narrow the ranges in sweep.parameters (failed trials name their fault), or run more trials")
    parent.log_metrics({"sweep/best_loss": best.loss})
    parent.flush_metrics()  # on a GPU worker an outage's buffer lives on that machine: deliver it now
    return SearchResult(trials=outcomes, best=best)


@stage("search", tags=["gpu"])
def search(tokenized: TokenizedData, base: BaseModelRef, config: PipelineConfig, trials: int,
           run: RunContext) -> SearchResult:
    """Run the sweep's trials and report the best."""
    return search_trials(tokenized, base, config, trials, run)


def write_best_config(config: PipelineConfig, result: SearchResult, run: RunContext) -> str:
    """The best trial's settings as a plain run config (no sweep section) in the run folder, and logged, redacted,
    to the sweep's MLflow run; returns the file's path."""
    best = result.best
    resolved = apply_values(config, best.values).model_dump(mode="json", exclude={"sweep"})
    header = (f"# The best of {len(result.trials)} trials of sweep {run.run_name} (MLflow run {run.mlflow_run_id}):\n"
              f"# trial {best.number}, validation loss {best.loss:.4f} at step {best.step}, with "
              + ", ".join(f"{path}={value}" for path, value in best.values.items())
              + "\n# Train, evaluate and register it like any run: adapterflow run <this file>\n")
    path = Path(run.run_dir) / BEST_CONFIG
    path.write_text(header + yaml.safe_dump(resolved, sort_keys=False))
    RunTracker.for_run(run).log_artifact(path, "sweep")
    return str(path)
