"""Side by side in MLflow: scores and forgetting per model, one table of the same examples, the run's plots."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from adapterflow.core.home import Home
from adapterflow.evaluation.comparison import (
    LOSS_CURVE_ARTIFACT,
    METRIC_BARS_ARTIFACT,
    add_forgetting,
    comparison_table,
    correctness,
    log_comparison_plots,
    score_generations,
)
from adapterflow.tracking.run import RunTracker

TOKEN = "hf_Q7bX2mLpR9sT4vW8yZ1aC3dE5fG6hJ0kNq"


def results() -> dict[str, dict]:
    return {
        "candidate": {"metrics": {"perplexity": 4.0, "general_perplexity": 33.0}, "answers": ["Paris", "blue sky"]},
        "base": {"metrics": {"perplexity": 9.0, "general_perplexity": 30.0}, "answers": ["London", "blue"]},
        "champion": {"metrics": {"perplexity": 5.0, "general_perplexity": 27.0}, "answers": ["Paris", "grey"]},
    }


def test_every_model_is_scored_on_the_same_references_and_forgetting_is_relative_to_base() -> None:
    models = results()
    per_example = score_generations(models, ["Paris", "blue sky"], ["exact_match", "rouge_l"])
    assert [row["exact_match"] for row in per_example["candidate"]] == [1.0, 1.0]
    assert [row["exact_match"] for row in per_example["base"]] == [0.0, 0.0]
    assert models["candidate"]["metrics"]["exact_match"] == 1.0 and models["champion"]["metrics"]["exact_match"] == 0.5
    add_forgetting(models)
    assert models["base"]["metrics"]["forgetting"] == 0.0
    assert models["candidate"]["metrics"]["forgetting"] == pytest.approx(0.1)
    assert models["champion"]["metrics"]["forgetting"] == pytest.approx(-0.1)


def test_without_a_general_set_no_forgetting_is_reported() -> None:
    models = {"base": {"metrics": {"perplexity": 2.0}, "answers": []}, "candidate": {"metrics": {}, "answers": []}}
    add_forgetting(models)
    assert "forgetting" not in models["candidate"]["metrics"]


def test_the_table_has_one_row_per_example_and_each_models_output_and_scores_in_model_order() -> None:
    models = results()
    per_example = score_generations(models, ["Paris", "blue sky"], ["exact_match"])
    table = comparison_table(["Capital of France?", "Colour of the sky?"], ["Paris", "blue sky"], models, per_example)
    assert list(table.columns) == ["prompt", "reference", "base", "base/exact_match", "champion",
                                   "champion/exact_match", "candidate", "candidate/exact_match"]
    assert table["candidate"].tolist() == ["Paris", "blue sky"] and table["base/exact_match"].tolist() == [0.0, 0.0]


def test_table_and_plots_are_logged_into_the_run_with_texts_redacted(
    home: Home, monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
) -> None:
    monkeypatch.setenv("HF_TOKEN", TOKEN)
    client = MlflowClient()
    run_id = client.create_run(client.create_experiment("plots")).info.run_id
    tracker = RunTracker(run_id, client)
    tracker.log_metrics({"train/loss": 3.0}, step=1)
    tracker.log_metrics({"train/loss": 2.0}, step=2)
    models = results()
    per_example = score_generations(models, ["Paris", "blue sky"], ["exact_match"])
    add_forgetting(models)
    tracker.log_table(comparison_table([f"token {TOKEN}?", "sky?"], ["Paris", "blue sky"], models, per_example),
                      "eval/samples.json")
    logged = log_comparison_plots(tracker, {name: result["metrics"] for name, result in models.items()})
    assert logged == [METRIC_BARS_ARTIFACT, LOSS_CURVE_ARTIFACT]
    artifacts = {item.path for item in client.list_artifacts(run_id, "eval")}
    assert {"eval/samples.json", METRIC_BARS_ARTIFACT, LOSS_CURVE_ARTIFACT} <= artifacts
    table = json.loads(Path(client.download_artifacts(run_id, "eval/samples.json", str(tmp_path))).read_text())
    assert "candidate/exact_match" in table["columns"] and TOKEN not in json.dumps(table)
    png = Path(client.download_artifacts(run_id, METRIC_BARS_ARTIFACT, str(tmp_path))).read_bytes()
    assert png.startswith(b"\x89PNG")


def test_log_figure_redacts_every_text_on_the_figure(home: Home, monkeypatch: pytest.MonkeyPatch) -> None:
    from matplotlib.figure import Figure

    monkeypatch.setenv("HF_TOKEN", TOKEN)
    client = MlflowClient()
    run_id = client.create_run(client.create_experiment("figure")).info.run_id
    figure = Figure()
    axis = figure.subplots()
    axis.set_title(f"loss with {TOKEN}")
    axis.annotate(TOKEN, (0.5, 0.5))
    RunTracker(run_id, client).log_figure(figure, "figure.png")
    assert axis.get_title() == "loss with <SECRET:HF_TOKEN>"
    assert all(TOKEN not in text.get_text() for text in figure.findobj(lambda artist: hasattr(artist, "get_text")))
    assert [item.path for item in client.list_artifacts(run_id)] == ["figure.png"]


def test_classifiers_get_a_correct_column_per_model_next_to_the_text() -> None:
    models = {"base": {"metrics": {}, "answers": ["spam", "spam"]},
              "candidate": {"metrics": {}, "answers": ["ham", "spam"]}}
    table = comparison_table(["hello", "win money"], ["ham", "spam"], models,
                             correctness(models, ["ham", "spam"]), input_column="text")
    assert list(table.columns) == ["text", "reference", "base", "base/correct", "candidate", "candidate/correct"]
    assert table["base/correct"].tolist() == [0.0, 1.0] and table["candidate/correct"].tolist() == [1.0, 1.0]
