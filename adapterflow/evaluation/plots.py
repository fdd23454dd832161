"""The evaluation's plots for the MLflow run: metric bars (models x metrics) and the training loss curve.

Figures are built with matplotlib's object API (no pyplot: no global figure state, no GUI backend) and
logged through RunTracker.log_figure, which redacts their texts.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from matplotlib.figure import Figure

MODEL_ORDER = ("base", "champion", "candidate")
MODEL_COLOURS = {"base": "#9e9e9e", "champion": "#f2a541", "candidate": "#2f7ed8"}


def metric_bars(metrics: Mapping[str, Mapping[str, float]], names: Sequence[str]) -> Figure:
    """One panel per metric (their scales differ), one bar per model, the value written on each bar."""
    from matplotlib.figure import Figure

    models = [model for model in MODEL_ORDER if model in metrics]
    shown = [name for name in names if all(name in metrics[model] for model in models)]
    figure = Figure(figsize=(2.4 * max(len(shown), 1), 3.2), layout="constrained")
    axes = figure.subplots(1, max(len(shown), 1), squeeze=False)[0]
    for axis, name in zip(axes, shown, strict=False):
        values = [metrics[model][name] for model in models]
        bars = axis.bar(models, values, color=[MODEL_COLOURS[model] for model in models])
        axis.bar_label(bars, labels=[f"{value:.3g}" for value in values], fontsize=8)
        axis.set_title(name, fontsize=10)
        axis.tick_params(axis="x", labelsize=8)
    figure.suptitle("Evaluation: base vs champion vs candidate")
    return figure


def loss_curve(series: Mapping[str, Sequence[tuple[int, float]]], kept_step: int | None = None,
               note: str | None = None) -> Figure:
    """Each named series of (step, value) points as a line over training steps; `kept_step`, the step whose
    weights were kept, as a dashed line, and `note` (why training stopped) under the title."""
    from matplotlib.figure import Figure

    figure = Figure(figsize=(6, 3.6), layout="constrained")
    axis = figure.subplots()
    for name, points in series.items():
        ordered = sorted(points)
        axis.plot([step for step, _ in ordered], [value for _, value in ordered], marker=".", label=name)
    if kept_step is not None:
        axis.axvline(kept_step, linestyle="--", color="grey", label=f"kept: step {kept_step}")
    axis.set_xlabel("step")
    axis.set_ylabel("loss")
    axis.set_title("Training and validation loss" + (f"\n{note}" if note else ""), fontsize=9 if note else None)
    if series:
        axis.legend()
    return figure
