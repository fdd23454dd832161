"""The console report: warnings from the data stages reach the person running the pipeline; a sweep's trials
fit a plain 80-column terminal."""

from __future__ import annotations

from io import StringIO

from rich.console import Console

from adapterflow.report import render_data_warnings, trials_table


def test_a_small_eval_set_warning_is_printed_and_nothing_when_there_is_none() -> None:
    console = Console(file=StringIO(), width=200)
    render_data_warnings(console, {"eval_warning": "12 eval rows left after leakage (below 50): data.split.min_eval_rows"})
    render_data_warnings(console, {"eval_warning": None})
    assert console.file.getvalue() == "warning: 12 eval rows left after leakage (below 50): data.split.min_eval_rows\n"


def test_a_sweeps_trials_table_names_settings_by_their_last_part_and_marks_the_best() -> None:
    trial = {"values": {"training.learning_rate": 0.000882, "method.r": 16, "training.warmup_ratio": 0.1},
             "state": "complete", "loss": 2.3256, "step": 30}
    pruned = {**trial, "number": 1, "state": "pruned", "loss": 3.0397, "step": 10}
    console = Console(file=StringIO(), width=80)
    console.print(trials_table([{**trial, "number": 0}, pruned], best=0))
    text = console.file.getvalue()
    assert "learning_rate" in text and "warmup_ratio" in text and "…" not in text
    assert "0 *" in text and "0.000882" in text and "pruned" in text and "3.0397" in text
    same_leaf = {**trial, "number": 0, "values": {"training.seed": 1, "sweep.seed": 2}}
    assert "training.seed" in trials_table([same_leaf], best=0).columns[1].header
