"""A run interrupted mid-training and run again with the same config goes on in the same MLflow run from its
newest checkpoint: one run, one model version, every training step logged once."""

from __future__ import annotations

from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from adapterflow.core.home import Home
from adapterflow.tracking.run import TAG_CHECKPOINT, TAG_RESUMED, TAG_RUN_KIND
from adapterflow.training.hf_trainer import AdapterflowTrainer
from schemas import load_config
from tests.conftest import tiny_config, write_config

pytestmark = pytest.mark.usefixtures("prefect_server")

STEPS = 6


class Killed(Exception):
    """Stands for the training process dying."""


def test_an_interrupted_run_resumes_in_the_same_mlflow_run_from_its_checkpoint(
    tmp_path: Path, home: Home, tiny_model_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from flows.finetune import finetune

    config = load_config(write_config(tmp_path, tiny_config(
        tiny_model_dir, training={"max_steps": STEPS, "checkpoint_steps": 2, "logging_steps": 1})))
    original = AdapterflowTrainer.training_step

    def dies_after_step_3(self, model, inputs, num_items_in_batch=None):  # noqa: ANN001, ANN202
        if self.state.global_step == 3:
            raise Killed("the training process died")
        return original(self, model, inputs, num_items_in_batch)

    with monkeypatch.context() as patch:
        patch.setattr(AdapterflowTrainer, "training_step", dies_after_step_3)
        with pytest.raises(Killed):
            finetune(config)
    client = MlflowClient()
    experiment = client.get_experiment_by_name(config.name)
    (interrupted,) = client.search_runs([experiment.experiment_id])
    assert interrupted.info.status == "FAILED"
    assert interrupted.data.tags[TAG_CHECKPOINT].endswith("/checkpoint-2")

    summary = finetune(config)

    assert summary["mlflow_run_id"] == interrupted.info.run_id
    runs = client.search_runs([experiment.experiment_id], filter_string=f"tags.`{TAG_RUN_KIND}` = 'finetune'")
    assert len(runs) == 1 and runs[0].info.status == "FINISHED" and runs[0].data.tags[TAG_RESUMED] == "1"
    assert [str(version.version) for version in client.search_model_versions(f"name = '{config.name}'")] == ["1"]
    steps = [metric.step for metric in client.get_metric_history(interrupted.info.run_id, "train/loss")]
    assert sorted(steps) == list(range(1, STEPS + 1))  # steps 1-3 from the first attempt, 3 not again, 4-6 after
    assert (home.cache / "checkpoints").is_dir()
    assert list((home.cache / "checkpoints").rglob("checkpoint-*")) == []  # a finished training leaves none
