"""The fine-tuning pipeline flow."""

from __future__ import annotations

from typing import Any

from prefect import flow

from adapterflow.summary import build_summary
from flows.data import prepare_data
from schemas.pipeline import PipelineConfig
from tasks.base_model import prepare_base_model
from tasks.evaluate import evaluate
from tasks.promote import promote
from tasks.register import register
from tasks.track import finish_tracking, mark_run_failed, start_tracking
from tasks.train import train


@flow(name="adapterflow-finetune", on_failure=[mark_run_failed], on_crashed=[mark_run_failed])
def finetune(config: PipelineConfig) -> dict[str, Any]:
    """Fine-tune an adapter on domain data, evaluate it, register it and promote it if it passes the gate.

    base model -> data (ingest ... tokenize, see flows/data.py) -> train -> evaluate -> register -> promote,
    all logged to one MLflow run; returns the run summary.
    """
    run = start_tracking(config)
    base = prepare_base_model(config.base_model, run)
    data = prepare_data(config, base, run)
    trained = train(data.tokenize, base, config, run)
    evaluation = evaluate(trained, data.tokenize, data.split, base, config, run)
    registered = register(trained, evaluation, base, data.split, config, run)
    promotion = promote(registered, evaluation, config.registry.promotion, run)
    summary = build_summary(run, data, {
        "base_model": base, **data.stages(), "train": trained, "evaluate": evaluation,
        "register": registered, "promote": promotion,
    }, method=config.method.type)
    finish_tracking(run, summary)
    return summary


@flow(name="adapterflow-data-check", on_failure=[mark_run_failed], on_crashed=[mark_run_failed])
def data_check(config: PipelineConfig) -> dict[str, Any]:
    """Run only the data stages and write the data report: what a training run would train on, and why.

    base model (its tokenizer) -> data (ingest ... tokenize, see flows/data.py); no training.
    """
    run = start_tracking(config, kind="data-check")
    base = prepare_base_model(config.base_model, run)
    data = prepare_data(config, base, run)
    summary = {"mlflow_run_id": run.mlflow_run_id, "experiment": run.experiment, "run_dir": run.run_dir,
               "data": data.report["counts"], "report": data.report,
               "timings": {name: record.seconds for name, record in data.stages().items()}}
    finish_tracking(run, summary)
    return summary
