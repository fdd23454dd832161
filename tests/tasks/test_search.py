"""Which failures a sweep survives: faults of the drawn values fail their trial, anything else stops the sweep; a
trial that reuses a stored adapter is judged by the loss its training measured."""

from __future__ import annotations

from pathlib import Path

import optuna
import pytest
import torch
from mlflow.tracking import MlflowClient

from adapterflow.core.errors import AdapterflowError, DataError, NumericalFault
from adapterflow.core.home import Home
from adapterflow.methods.memory_plan import out_of_memory_advice
from adapterflow.training.probe import HeldOutProbe
from schemas import load_config
from schemas.training import TrainingConfig
from tasks.search import run_trial, search_trials, stored_adapter_loss, trial_fault
from tasks.track import open_run
from tasks.train import train_or_reuse
from tests.conftest import tiny_config, write_config
from tests.tasks.helpers import tokenized_questions


def test_divergence_and_out_of_memory_fail_the_trial_anything_else_the_sweep() -> None:
    assert trial_fault(NumericalFault("the loss is nan at step 3"))
    try:  # as tasks/train.py raises it once the micro-batch can't be halved any further
        raise out_of_memory_advice(TrainingConfig(batch_size=1), "cuda") from torch.OutOfMemoryError("CUDA out of memory")
    except AdapterflowError as error:
        assert trial_fault(error)
    assert not trial_fault(DataError("data/train.jsonl: 40% of rows are malformed"))
    assert not trial_fault(AdapterflowError("MLflow is unreachable"))


def test_values_valid_alone_but_not_together_fail_their_trial_in_its_own_run(
    tmp_path: Path, home: Home, tiny_model_dir: Path,
) -> None:
    raw = tiny_config(tiny_model_dir, sweep={"parameters": {"method.init_r": {"choices": [4, 8]},
                                                           "method.target_r": {"choices": [2, 8]}}})
    raw["method"] = {"type": "adalora", "init_r": 8, "target_r": 4}
    config = load_config(write_config(tmp_path, raw))
    client = MlflowClient()
    parent = open_run(config, home, "flow-run-1", kind="sweep", client=client)
    # each value alone fits the config (checked at load); init_r 4 with target_r 8 does not
    trial = optuna.trial.FixedTrial({"method.init_r": 4, "method.target_r": 8})
    outcome = run_trial(trial, tokenized=None, base=None, config=config, parent=parent, client=client)  # not reached

    assert outcome.state == "failed" and outcome.loss is None
    assert "the drawn values make no valid config" in outcome.reason and "target_r (8) must not exceed init_r (4)" in outcome.reason
    run = client.get_run(outcome.mlflow_run_id)
    assert run.info.status == "FAILED" and run.data.params == {"method.init_r": "4", "method.target_r": "8"}
    assert run.data.tags["mlflow.parentRunId"] == parent.mlflow_run_id
    assert run.data.tags["adapterflow.trial_state"] == "failed"


def test_an_adapter_reused_from_the_store_is_judged_by_the_loss_its_training_measured(
    tmp_path: Path, tiny_model_dir: Path,
) -> None:
    storage, base, tokenized = tokenized_questions(tmp_path, tiny_model_dir, rows=28, eval_size=0.2,
                                                   validation_rows=4)
    # a trial, trained or reused, judges on the validation split: the eval set, unreadable here, is evaluate's
    (Path(tokenized.uri) / "eval.parquet").write_bytes(b"unreadable: a sweep must not read the eval set")
    config = load_config(write_config(tmp_path, tiny_config(tiny_model_dir, training={"max_steps": 4})))
    probe = HeldOutProbe(every_steps=4, report=lambda step, loss: False, batch_size=config.evaluation.batch_size)
    trained = train_or_reuse(tokenized, base, config, storage, None, probe)
    assert stored_adapter_loss(trained, tokenized, base, config, storage) == pytest.approx(probe.history[-1][1],
                                                                                           rel=1e-4)


def test_a_sweep_without_a_validation_split_stops_saying_how_to_get_one(tmp_path: Path, tiny_model_dir: Path,
                                                                       home: Home) -> None:
    _, base, tokenized = tokenized_questions(tmp_path, tiny_model_dir, rows=24, eval_size=0.2)
    assert tokenized.validation_rows == 0
    config = load_config(write_config(tmp_path, tiny_config(tiny_model_dir, sweep={
        "parameters": {"training.learning_rate": {"low": 1e-4, "high": 1e-2, "log": True}}})))
    run = open_run(config, home, "flow-run-1", kind="sweep", client=MlflowClient())
    with pytest.raises(AdapterflowError, match="judges and prunes its trials on the validation split") as refused:
        search_trials(tokenized, base, config, 2, run)
    assert "data.split.validation_size" in refused.value.hint
