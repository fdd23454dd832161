"""The fine-tuning pipeline flow."""

# No `from __future__ import annotations`: Prefect builds each flow's parameter model from real annotations,
# and a flow loaded from its file (serve, workers) could not resolve them as strings.

from typing import Any

from prefect import flow

from adapterflow.core.home import configure_environment
from adapterflow.orchestration.locks import one_retrain_at_a_time
from adapterflow.reporting.summary import build_summary, unchanged_summary
from schemas.pipeline import PipelineConfig
from tasks.base_model import prepare_base_model
from tasks.check_changes import check_changes
from tasks.track import finish_tracking, finish_unchanged, mark_run_failed, start_tracking


def load_training_stages():  # noqa: ANN201
    """The data, training and registry stages, imported only when a run has work to do: their libraries
    (transformers' Trainer, peft, great-expectations, presidio) take seconds to import, and a scheduled run
    that finds nothing changed should not pay for them."""
    from adapterflow.core.logs import quiet_third_party

    quiet_third_party()  # also where no CLI ran first: a flow run on a worker
    from flows.data import prepare_data
    from flows.gpu import evaluate_stage, train_stage
    from tasks.drift import report_drift
    from tasks.promote import promote
    from tasks.register import register

    return prepare_data, report_drift, train_stage, evaluate_stage, register, promote


@flow(name="adapterflow-finetune", on_failure=[mark_run_failed], on_crashed=[mark_run_failed])
def finetune(config: PipelineConfig) -> dict[str, Any]:
    """Fine-tune an adapter on domain data, evaluate it, register it and promote it if it passes the gate.

    (one run per registered model at a time; an interrupted run of the same config goes on in its MLflow run and
    from its newest training checkpoint) base model -> check changes: a no-op when nothing changed ->
    data (ingest ... tokenize, see flows/data.py) -> drift since the champion's data -> train -> evaluate (both
    on the GPU pool in distributed mode, see flows/gpu.py) -> register -> promote, all logged to one MLflow run;
    returns the run summary.
    """
    configure_environment()
    # the slot first: a run of this config that was interrupted (and only such a run) is resumed by start_tracking
    with one_retrain_at_a_time(config.registered_model_name, config.execution.retrain_lock_timeout_s):
        run = start_tracking(config)
        base = prepare_base_model(config.base_model, run)
        change = check_changes(config, base, run)
        if not change.retrain:
            return finish_unchanged(run, unchanged_summary(run, config, {"base_model": base, "check_changes": change}))
        prepare_data, report_drift, train_stage, evaluate_stage, register, promote = load_training_stages()
        data = prepare_data(config, base, run)
        drift = report_drift(data.split, data.report["counts"], config.registered_model_name, run)
        trained = train_stage(data.tokenize, base, config, run)
        evaluation = evaluate_stage(trained, data.tokenize, data.split, base, config, run)
        registered = register(trained, evaluation, base, data.split, config, run)
        promotion = promote(registered, evaluation, config.registry.promotion, run)
        summary = build_summary(run, data, {
            "base_model": base, "check_changes": change, **data.stages(), "drift": drift, "train": trained, "evaluate": evaluation,
            "register": registered, "promote": promotion,
        }, method=config.method.type)
        # finished before the slot is free: the next run must see this one as the last successful run
        finish_tracking(run, summary)
    return summary


@flow(name="adapterflow-data-check", on_failure=[mark_run_failed], on_crashed=[mark_run_failed])
def data_check(config: PipelineConfig) -> dict[str, Any]:
    """Run only the data stages and write the data report: what a training run would train on, and why.

    base model (its tokenizer) -> data (ingest ... tokenize, see flows/data.py); no training.
    """
    configure_environment()
    run = start_tracking(config, kind="data-check")
    base = prepare_base_model(config.base_model, run)
    prepare_data = load_training_stages()[0]
    data = prepare_data(config, base, run)
    summary = {"mlflow_run_id": run.mlflow_run_id, "experiment": run.experiment, "run_dir": run.run_dir,
               "data": data.report["counts"], "report": data.report,
               "timings": {name: record.seconds for name, record in data.stages().items()}}
    finish_tracking(run, summary)
    return summary
