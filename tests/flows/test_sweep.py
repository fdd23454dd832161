"""`adapterflow sweep` end to end on the tiny model: one parent MLflow run with a nested run per trial, trials
pruned on their eval loss, the best config written, and with --register the best config trained (from the store),
registered and gated like any run."""

from __future__ import annotations

import statistics
from pathlib import Path

import pytest
import yaml
from mlflow.tracking import MlflowClient
from typer.testing import CliRunner

from adapterflow.cli.main import app
from adapterflow.core.errors import NumericalFault
from adapterflow.core.home import Home
from adapterflow.storage.store import Storage
from schemas import load_config
from tests.conftest import tiny_config, write_config

pytestmark = pytest.mark.usefixtures("prefect_server")
LOSS = "val/loss"  # what trials are judged by
runner = CliRunner()


def sweep_config(tiny_model_dir: Path, **sweep: object) -> dict:
    return tiny_config(tiny_model_dir, sweep={
        "parameters": {"training.learning_rate": {"low": 1e-3, "high": 3e-2, "log": True},
                       "method.r": {"choices": [2, 4]}},
        "eval_steps": 3, "startup_trials": 1, **sweep})


def test_a_four_trial_sweep_nests_its_trials_prunes_writes_the_best_config_and_registers_it(
    tmp_path: Path, home: Home, tiny_model_dir: Path,
) -> None:
    config_path = write_config(tmp_path, sweep_config(tiny_model_dir))
    copied = tmp_path / "out" / "best.yaml"
    summary_path = tmp_path / "summary.json"
    result = runner.invoke(app, ["sweep", str(config_path), "--trials", "4", "--register", "--best-config",
                                 str(copied), "--summary-json", str(summary_path)])
    assert result.exit_code == 0, result.output
    assert "Trials" in result.output and "Best: trial" in result.output and "PROMOTED" in result.output
    summary = yaml.safe_load(summary_path.read_text())  # JSON is YAML
    trials, best = summary["trials"], summary["best"]
    assert [trial["number"] for trial in trials] == [0, 1, 2, 3]
    assert trials[0]["state"] == "complete"  # the startup trial always runs to its end
    assert {trial["state"] for trial in trials} == {"complete", "pruned"}  # this seed prunes some

    client = MlflowClient()
    parent = client.get_run(summary["mlflow_run_id"])
    assert parent.data.tags["adapterflow.kind"] == "sweep" and parent.info.status == "FINISHED"
    assert parent.data.metrics["sweep/best_loss"] == best["loss"]
    assert parent.data.tags["adapterflow.best_trial_run_id"] == best["mlflow_run_id"]
    counts = {state: sum(trial["state"] == state for trial in trials) for state in ("complete", "pruned", "failed")}
    assert {state: parent.data.metrics[f"sweep/trials_{state}"] for state in counts} == counts
    assert {m.step: m.value for m in client.get_metric_history(parent.info.run_id, "sweep/trial_loss")} == {
        trial["number"]: trial["loss"] for trial in trials}
    assert {a.path for a in client.list_artifacts(parent.info.run_id, "sweep")} == {
        "sweep/best_config.yaml", "sweep/trials.json"}

    children = client.search_runs([parent.info.experiment_id],
                                  filter_string=f"tags.`mlflow.parentRunId` = '{parent.info.run_id}'")
    by_id = {child.info.run_id: child for child in children}
    assert set(by_id) == {trial["mlflow_run_id"] for trial in trials}
    complete_curves = []
    for trial in trials:
        child = by_id[trial["mlflow_run_id"]]
        assert child.data.tags["adapterflow.trial_state"] == trial["state"] and child.info.status == "FINISHED"
        assert float(child.data.params["training.learning_rate"]) == pytest.approx(trial["values"]["training.learning_rate"])
        assert child.data.params["method.r"] == str(trial["values"]["method.r"])
        curve = {m.step: m.value for m in client.get_metric_history(child.info.run_id, LOSS)}
        assert curve[trial["step"]] == trial["loss"]
        if trial["state"] == "complete":
            assert sorted(curve) == [3, 6, 9, 12] and "train/loss" in child.data.metrics
            assert trial["loss"] == min(curve.values())  # the best step's weights are the ones kept
            complete_curves.append(curve)
        else:  # pruned where it was behind the median of the trials completed before it, at that step
            assert trial["step"] == max(curve) < 12 and "worse than the median" in child.data.tags["adapterflow.trial_reason"]
            earlier = [curve_[trial["step"]] for curve_ in complete_curves]
            assert trial["loss"] > statistics.median(earlier)
    assert best["loss"] == min(trial["loss"] for trial in trials if trial["state"] == "complete")
    assert not list(Storage.resolve(None, home).mirror.glob(".adapter-*"))  # pruned trials leave nothing behind

    written = Path(summary["best_config"])
    assert copied.read_text() == written.read_text()
    assert written.read_text().startswith(f"# The best of 4 trials of sweep {summary['run_name']}")
    best_config = load_config(written)
    assert best_config.sweep is None and best_config.training.max_steps == 12
    assert best_config.training.learning_rate == best["values"]["training.learning_rate"]
    assert best_config.method.r == best["values"]["method.r"]

    registered = summary["finetune"]
    assert registered["model_version"] == "1" and registered["promoted"] is True
    assert "train" in registered["skipped"]  # the best trial's adapter, from the store: not trained again
    registered_run = client.get_run(registered["mlflow_run_id"])
    # the registered adapter is the best trial's, evaluated on the eval set, which no trial read
    assert registered_run.data.metrics["eval/candidate/loss"] > 0
    assert registered_run.data.metrics["train/kept_step"] == best["step"]
    assert registered_run.data.params["training.learning_rate"] == str(best["values"]["training.learning_rate"])


def test_a_trial_that_diverges_fails_alone_and_the_sweep_goes_on(
    tmp_path: Path, home: Home, tiny_model_dir: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    from adapterflow.training.hf_trainer import AdapterflowTrainer
    from flows.sweep import sweep

    original = AdapterflowTrainer.training_step

    def diverging(self, model, inputs, num_items_in_batch=None):  # noqa: ANN001, ANN202
        if self.args.learning_rate == 0.5 and self.state.global_step == 2:
            raise NumericalFault("the loss is nan at step 3", hint="lower training.learning_rate")
        return original(self, model, inputs, num_items_in_batch)

    monkeypatch.setattr(AdapterflowTrainer, "training_step", diverging)
    config = tiny_config(tiny_model_dir, training={"max_steps": 4}, sweep={
        "parameters": {"training.learning_rate": {"choices": [0.5, 0.01]}}, "sampler": "random", "seed": 1,
        "pruner": "none"})
    summary = sweep(load_config(write_config(tmp_path, config)), trials=3)

    states = {trial["values"]["training.learning_rate"]: trial["state"] for trial in summary["trials"]}
    assert states == {0.5: "failed", 0.01: "complete"}
    failed = next(trial for trial in summary["trials"] if trial["state"] == "failed")
    assert "the loss is nan at step 3" in failed["reason"] and failed["loss"] is None
    assert MlflowClient().get_run(failed["mlflow_run_id"]).info.status == "FAILED"
    assert summary["best"]["values"] == {"training.learning_rate": 0.01}


def test_sweep_without_a_sweep_section_is_a_usage_error(tmp_path: Path, home: Home, tiny_model_dir: Path) -> None:
    result = runner.invoke(app, ["sweep", str(write_config(tmp_path, tiny_config(tiny_model_dir)))])
    assert result.exit_code == 2 and "has no sweep section" in result.output and "Traceback" not in result.output
