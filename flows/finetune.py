"""The fine-tuning pipeline flow."""

from __future__ import annotations

from typing import Any

from prefect import flow

from adapterflow.summary import build_summary
from schemas.pipeline import PipelineConfig
from tasks.base_model import prepare_base_model
from tasks.clean import clean
from tasks.dedup import dedup
from tasks.evaluate import evaluate
from tasks.ingest import ingest
from tasks.promote import promote
from tasks.register import register
from tasks.split import split
from tasks.tokenize import tokenize
from tasks.track import finish_tracking, mark_run_failed, start_tracking
from tasks.train import train
from tasks.validate import validate


@flow(name="adapterflow-finetune", on_failure=[mark_run_failed], on_crashed=[mark_run_failed])
def finetune(config: PipelineConfig) -> dict[str, Any]:
    """Fine-tune an adapter on domain data, evaluate it, register it and promote it if it passes the gate.

    ingest -> clean -> dedup -> validate -> split -> tokenize -> train -> evaluate -> register -> promote,
    all logged to one MLflow run; returns the run summary.
    """
    run = start_tracking(config)
    base = prepare_base_model(config.base_model, run)
    ingested = ingest(config.data, run)
    cleaned = clean(ingested, config.data.clean, run)
    deduped = dedup(cleaned, config.data.dedup, run)
    validated = validate(deduped, config.data.validation, run)
    splits = split(deduped, config.data.split, run)
    tokenized = tokenize(splits, base, config.tokenize, run)
    trained = train(tokenized, base, config, run)
    evaluation = evaluate(trained, tokenized, splits, base, config, run)
    registered = register(trained, evaluation, base, splits, config, run)
    promotion = promote(registered, evaluation, config.registry.promotion, run)
    summary = build_summary(run, {
        "base_model": base, "ingest": ingested, "clean": cleaned, "dedup": deduped, "validate": validated,
        "split": splits, "tokenize": tokenized, "train": trained, "evaluate": evaluation,
        "register": registered, "promote": promotion,
    })
    finish_tracking(run, summary)
    return summary
