"""The hyperparameter-search flow behind `adapterflow sweep`."""

# No `from __future__ import annotations`: Prefect builds each flow's parameter model from real annotations.

from typing import Any

from prefect import flow

from adapterflow.core.errors import UsageError
from adapterflow.core.home import configure_environment
from adapterflow.reporting.summary import sweep_summary
from flows.finetune import load_training_stages
from schemas.pipeline import PipelineConfig
from tasks.base_model import prepare_base_model
from tasks.track import finish_tracking, mark_run_failed, start_tracking


@flow(name="adapterflow-sweep", on_failure=[mark_run_failed], on_crashed=[mark_run_failed])
def sweep(config: PipelineConfig, trials: int | None = None) -> dict[str, Any]:
    """Search the config's `sweep:` ranges with Optuna and write the best trial's config.

    base model -> data (ingest ... tokenize, once for all trials, see flows/data.py) -> search: `trials` trials,
    each trained and judged by its validation loss in a nested MLflow run under this one, pruned on the way (on the GPU
    pool in distributed mode, see flows/gpu.py) -> the best config written and logged. Running the finetune flow
    on that config then reuses the best trial's adapter from the store (`adapterflow sweep --register` does).
    """
    from flows.gpu import search_stage
    from tasks.search import write_best_config

    configure_environment()
    check_config(config)
    run = start_tracking(config, kind="sweep")
    base = prepare_base_model(config.base_model, run)
    prepare_data = load_training_stages()[0]
    data = prepare_data(config, base, run)
    searched = search_stage(data.tokenize, base, config, trials or config.sweep.trials, run)
    best_config = write_best_config(config, searched, run)
    summary = sweep_summary(run, data, searched, best_config)
    finish_tracking(run, summary)
    return summary


def check_config(config: PipelineConfig) -> None:
    """A sweep needs its section (the schema checks the rest when the config is loaded)."""
    if config.sweep is None:
        raise UsageError(
            f"config {config.name!r} has no sweep section",
            hint="add one, e.g.  sweep: {parameters: {training.learning_rate: {low: 1.0e-5, high: 1.0e-3, log: true}}}")
