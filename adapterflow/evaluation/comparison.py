"""Base, champion and candidate side by side: generation scores and forgetting added to each model's metrics,
one table of the same examples (each model's output and per-example scores), and the run's plots."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import pandas as pd

from adapterflow.evaluation.forgetting import forgetting
from adapterflow.evaluation.generation_metrics import generation_scores
from adapterflow.evaluation.metrics import EVAL_METRICS
from adapterflow.evaluation.plots import MODEL_ORDER, loss_curve, metric_bars
from adapterflow.tracking.run import TAG_STOPPED_EARLY, RunTracker

METRIC_BARS_ARTIFACT = "eval/metrics.png"
LOSS_CURVE_ARTIFACT = "eval/loss_curve.png"
LOSS_SERIES = ("train/loss", "val/loss")  # the training metrics drawn on the loss curve


def ordered(results: Mapping[str, dict]) -> list[str]:
    """Model names in table order: base, champion, candidate."""
    return [name for name in MODEL_ORDER if name in results]


def score_generations(
    results: dict[str, dict], references: Sequence[str], metrics: Sequence[str],
) -> dict[str, list[dict]]:
    """Add each model's sample generation scores to its metrics; return its per-example scores.

    Every model is scored on the same references: its first answers, as many as there are references."""
    per_example = {}
    for name, result in results.items():
        answers = result["answers"][: len(references)]
        sample, rows = generation_scores(answers, list(references)[: len(answers)], metrics)
        result["metrics"].update(sample)
        per_example[name] = rows
    return per_example


def add_forgetting(results: dict[str, dict]) -> None:
    """`forgetting` of every model with a general-set perplexity: its relative change against the base model's
    (0 for the base model itself)."""
    base = results.get("base", {}).get("metrics", {}).get("general_perplexity")
    if base is None:
        return
    for result in results.values():
        if "general_perplexity" in result["metrics"]:
            result["metrics"]["forgetting"] = forgetting(base, result["metrics"]["general_perplexity"])


def correctness(results: Mapping[str, dict], references: Sequence[str]) -> dict[str, list[dict]]:
    """Classifiers' per-example score: 1 where the predicted label is the reference."""
    return {name: [{"correct": float(answer == reference)} for answer, reference in zip(
        result["answers"], references, strict=False)] for name, result in results.items()}


def comparison_table(
    inputs: Sequence[str], references: Sequence[str], results: Mapping[str, dict],
    per_example: Mapping[str, list[dict]], input_column: str = "prompt",
) -> pd.DataFrame:
    """One row per example: the input, the reference, then per model (base, champion, candidate) its output and
    its scores as `<model>/<metric>` columns."""
    count = min([len(inputs)] + [len(result["answers"]) for result in results.values()])
    table: dict[str, list] = {input_column: list(inputs[:count]), "reference": list(references[:count])}
    for name in ordered(results):
        table[name] = results[name]["answers"][:count]
        rows = per_example.get(name, [])[:count]
        for metric in (rows[0] if rows else {}):
            table[f"{name}/{metric}"] = [row[metric] for row in rows]
    return pd.DataFrame(table)


def loss_series(tracker: RunTracker) -> dict[str, list[tuple[int, float]]]:
    """The run's logged training losses as (step, value) points."""
    series = {}
    for key in LOSS_SERIES:
        history = tracker.client.get_metric_history(tracker.run_id, key)
        if history:
            series[key] = [(metric.step, metric.value) for metric in history]
    return series


def log_comparison_plots(tracker: RunTracker, metrics: Mapping[str, Mapping[str, float]]) -> list[str]:
    """Log the metric bars and the loss curve into the run; return the artifact paths logged."""
    logged = []
    names = [name for name in EVAL_METRICS if name in metrics.get("candidate", {})]
    if names:
        tracker.log_figure(metric_bars(metrics, names), METRIC_BARS_ARTIFACT)
        logged.append(METRIC_BARS_ARTIFACT)
    series = loss_series(tracker)
    if series:
        run = tracker.client.get_run(tracker.run_id).data
        kept = run.metrics.get("train/kept_step")
        note = run.tags.get(TAG_STOPPED_EARLY)
        tracker.log_figure(loss_curve(series, int(kept) if kept is not None else None, note), LOSS_CURVE_ARTIFACT)
        logged.append(LOSS_CURVE_ARTIFACT)
    return logged
