"""The console report: warnings from the data stages reach the person running the pipeline; a sweep's trials
fit a plain 80-column terminal."""

from __future__ import annotations

from io import StringIO

from rich.console import Console

from adapterflow.reporting.console import metrics_table, render_data_warnings, trials_table


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


def test_the_evaluation_table_has_a_row_per_metric_and_fits_80_columns() -> None:
    scores = {"perplexity": 1124.7, "loss": 7.0255, "rouge_l": 0.1, "chrf": 2.28, "bleu": 1.06, "exact_match": 0.0,
              "general_perplexity": 997.9, "forgetting": 0.0}
    metrics = {"base": scores, "champion": scores | {"perplexity": 990.1}, "candidate": scores | {"forgetting": -0.022}}
    console = Console(file=StringIO(), width=80)
    console.print(metrics_table(metrics))
    text = console.file.getvalue()
    assert "…" not in text and all(len(line) <= 80 for line in text.splitlines())
    assert "general_perplexity" in text and "-0.022" in text and "990.1" in text
    header = next(line for line in text.splitlines() if "metric" in line)
    assert header.index("base") < header.index("champion") < header.index("candidate")
