"""The data flow: from the configured sources to checked, tokenized train and eval splits and a data report."""

# No `from __future__ import annotations`: Prefect builds each flow's parameter model from real annotations,
# and a flow loaded from its file (serve, workers) could not resolve them as strings.

from prefect import flow

from adapterflow.storage.records import BaseModelRef, PreparedData, RunContext
from schemas.pipeline import PipelineConfig
from tasks.check_tokens import check_tokens
from tasks.clean import clean
from tasks.dedup import dedup
from tasks.ingest import ingest
from tasks.redact import redact
from tasks.report_data import report_data
from tasks.split import split
from tasks.tokenize import tokenize
from tasks.validate import validate


@flow(name="adapterflow-data")
def prepare_data(config: PipelineConfig, base: BaseModelRef, run: RunContext) -> PreparedData:
    """Make the data safe to train on, stopping before any GPU time is spent if it is not.

    ingest -> clean -> redact -> dedup -> validate -> split (+ leakage) -> tokenize -> check tokens -> report
    """
    data, workers = config.data, config.execution.data_workers
    ingested = ingest(data, run)
    cleaned = clean(ingested, data.clean, run)
    redacted = redact(cleaned, data.pii, run)
    deduped = dedup(redacted, data.dedup, workers, run)
    validated = validate(deduped, data.validation, ingested.formats, run)
    splits = split(deduped, data.split, data.leakage, workers, run, config.registered_model_name)
    tokenized = tokenize(splits, base, config.tokenize, run)
    token_checks = check_tokens(tokenized, data.validation, ingested.table.task == "sft", run)
    report = report_data(ingested, cleaned, redacted, deduped, validated, splits, tokenized, token_checks, run)
    return PreparedData(ingest=ingested, clean=cleaned, redact=redacted, dedup=deduped, validation=validated,
                        split=splits, tokenize=tokenized, check_tokens=token_checks, report=report)
