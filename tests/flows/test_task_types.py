"""The real flow for the other task types: continued pre-training and sequence classification."""

from __future__ import annotations

import json
from pathlib import Path

import mlflow
import pandas as pd
import pytest
from mlflow.tracking import MlflowClient

from adapterflow.core.home import Home
from schemas import load_config
from tests.conftest import ASSETS, tiny_config, write_config

pytestmark = pytest.mark.usefixtures("prefect_server")


def run_flow(config_path: Path) -> dict:
    from flows.finetune import finetune

    return finetune(load_config(config_path))


def test_classifier_is_judged_by_macro_f1_and_labels_texts_from_the_registry(
    tmp_path: Path, home: Home, tiny_classifier_dir: Path
) -> None:
    config = tiny_config(tiny_classifier_dir, sources=[{"path": str(ASSETS / "classification.jsonl")}],
                         training={"max_steps": 30, "learning_rate": 1e-3, "batch_size": 8})
    config["method"] = {"type": "full"}
    summary = run_flow(write_config(tmp_path, config))

    assert summary["task"] == "classification" and summary["data"]["input_rows"] == 80
    candidate, base = summary["metrics"]["candidate"], summary["metrics"]["base"]
    assert {"accuracy", "macro_f1", "loss"} <= set(candidate)
    assert candidate["loss"] < base["loss"]
    assert "macro_f1" in summary["promotion_reason"]
    assert "vs the majority-class baseline" in " ".join(summary["promotion_reasons"])  # not the random head
    run = MlflowClient().get_run(summary["mlflow_run_id"])
    assert "eval/candidate/macro_f1" in run.data.metrics and "memory/estimate_total_mb" in run.data.metrics
    assert "eval/majority/macro_f1" in run.data.metrics
    primary = next(line for line in summary["promotion_reasons"] if "primary macro_f1" in line)
    assert "95% lower bound" in primary  # resampled against the majority class on the candidate's own eval labels
    logged = json.loads(Path(mlflow.artifacts.download_artifacts(
        run_id=summary["mlflow_run_id"], artifact_path="eval/per_example.json", dst_path=str(tmp_path))).read_text())
    examples = int(candidate["eval_examples"])
    assert f"on {examples} examples" in primary
    assert all(len(logged[model][key]) == examples for model in ("base", "candidate")
               for key in ("label", "predicted", "correct", "nll", "tokens"))

    model = mlflow.pyfunc.load_model(summary["model_uri"])
    labelled = model.predict(pd.DataFrame({"text": ["What does `len` do?", "Return the number of items."]}))
    assert list(labelled.columns) == ["label", "score"]
    assert set(labelled["label"]) <= {"question", "answer"} and ((labelled["score"] > 0) & (labelled["score"] <= 1)).all()


def test_continued_pretraining_trains_on_every_token_of_raw_text(tmp_path: Path, home: Home, tiny_model_dir: Path) -> None:
    config = tiny_config(tiny_model_dir, sources=[{"path": str(ASSETS / "text.jsonl")}],
                         evaluation={"sample_generations": 0})
    summary = run_flow(write_config(tmp_path, config))

    assert summary["task"] == "pretrain" and summary["data"]["input_rows"] == 40
    assert summary["metrics"]["candidate"]["perplexity"] < summary["metrics"]["base"]["perplexity"]
    metrics = MlflowClient().get_run(summary["mlflow_run_id"]).data.metrics
    assert metrics["data/label_tokens"] == metrics["data/tokens"] > 0  # every token is a label
    assert summary["metrics"]["candidate"]["eval_tokens"] > 0 and summary["promoted"]
