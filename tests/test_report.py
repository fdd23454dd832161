"""The console report: warnings from the data stages reach the person running the pipeline."""

from __future__ import annotations

from io import StringIO

from rich.console import Console

from adapterflow.report import render_data_warnings


def test_a_small_eval_set_warning_is_printed_and_nothing_when_there_is_none() -> None:
    console = Console(file=StringIO(), width=200)
    render_data_warnings(console, {"eval_warning": "12 eval rows left after leakage (below 50): data.split.min_eval_rows"})
    render_data_warnings(console, {"eval_warning": None})
    assert console.file.getvalue() == "warning: 12 eval rows left after leakage (below 50): data.split.min_eval_rows\n"
