"""The eval suite in the real flow: generation scores and forgetting per model, one comparison table, plots,
system metrics during training, the summary as a Prefect artifact, and evaluation caches keyed by the general
set's content."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from adapterflow.core.home import Home
from adapterflow.evaluation.forgetting import PACKAGED_GENERAL_SET
from adapterflow.tracking.run import EXPERIMENT_KIND_TAG
from schemas import load_config
from tests.conftest import tiny_config, write_config

pytestmark = pytest.mark.usefixtures("prefect_server")
SCORES = ("rouge_l", "chrf", "bleu", "exact_match")


def run_flow(config_path: Path, overrides: list[str] | None = None) -> dict:
    from flows.finetune import finetune

    return finetune(load_config(config_path, overrides))


def test_models_are_compared_side_by_side_and_the_eval_cache_follows_the_general_sets_content(
    tmp_path: Path, home: Home, tiny_model_dir: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    from prefect.artifacts import Artifact

    monkeypatch.setenv("MLFLOW_SYSTEM_METRICS_SAMPLING_INTERVAL", "0.2")  # the tiny model trains in seconds
    same_content = tmp_path / "copy_of_packaged.txt"  # another path, the packaged set's content
    shutil.copy(PACKAGED_GENERAL_SET, same_content)
    # base and candidate only: the champion the first run promotes would be evaluated afresh in the next runs
    config = tiny_config(tiny_model_dir, evaluation={
        "sample_generations": 3, "max_new_tokens": 6, "compare_champion": False,
        "general_set": str(same_content), "general_passages": 20})
    config_path = write_config(tmp_path, config)
    summary = run_flow(config_path)

    metrics = summary["metrics"]
    for model in ("base", "candidate"):
        assert set(SCORES) | {"general_perplexity", "forgetting"} <= set(metrics[model]), model
    assert metrics["base"]["forgetting"] == 0.0
    base_general = metrics["base"]["general_perplexity"]
    assert metrics["candidate"]["forgetting"] == pytest.approx(
        (metrics["candidate"]["general_perplexity"] - base_general) / base_general)

    client = MlflowClient()
    run_id = summary["mlflow_run_id"]
    logged = client.get_run(run_id).data.metrics
    assert logged["eval/candidate/forgetting"] == pytest.approx(metrics["candidate"]["forgetting"])
    assert {f"eval/{model}/{score}" for model in ("base", "candidate") for score in SCORES} <= set(logged)
    artifacts = {item.path for item in client.list_artifacts(run_id, "eval")}
    assert {"eval/samples.json", "eval/metrics.png", "eval/loss_curve.png"} <= artifacts
    table = json.loads(Path(client.download_artifacts(run_id, "eval/samples.json", str(tmp_path))).read_text())
    assert table["columns"] == ["prompt", "reference", "base", *(f"base/{s}" for s in SCORES),
                                "candidate", *(f"candidate/{s}" for s in SCORES)]
    assert len(table["data"]) == 3
    digests = {item.dataset.name: item.dataset.digest for item in client.get_run(run_id).inputs.dataset_inputs}
    assert digests.keys() == {"train", "eval", "validation"} and len(set(digests.values())) == 3  # each side its own
    assert "system/cpu_utilization_percentage" in logged and "system/system_memory_usage_megabytes" in logged
    artifact = Artifact.get("adapterflow-summary-tiny-assistant")  # the flow's last act: its summary in Prefect
    assert artifact is not None and f"MLflow run: `{run_id}`" in artifact.data and "| candidate |" in artifact.data
    experiment = client.get_experiment_by_name("tiny-assistant")
    assert experiment.tags[EXPERIMENT_KIND_TAG] == "custom_model_development"

    # the packaged set itself: the same passages, so every model's evaluation comes from the cache
    again = run_flow(config_path, ["execution.skip_unchanged=false", "evaluation.general_set=null"])
    assert "evaluate" in again["skipped"]
    assert again["metrics"]["base"]["general_perplexity"] == base_general

    changed = tmp_path / "changed.txt"
    changed.write_text("Completely different text about sailing boats and the open sea.\n" * 20)
    third = run_flow(config_path, ["execution.skip_unchanged=false", f"evaluation.general_set={changed}"])
    assert "evaluate" not in third["skipped"]
    assert third["metrics"]["base"]["general_perplexity"] != base_general
