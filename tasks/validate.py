"""Validate: a great-expectations suite over the cleaned rows; a failure stops the run before training."""

from __future__ import annotations

import logging
import shutil
from pathlib import Path
from typing import Any

import orjson
import pandas as pd
import yaml

from adapterflow.data.tables import iter_rows, prompt_and_response
from adapterflow.errors import DataError, ValidationGateFailed
from adapterflow.logs import cap_logger_levels
from adapterflow.records import FilterResult, RunContext, ValidationResult
from adapterflow.stage import stage, stage_logger
from adapterflow.suites import builtin_suite_path
from adapterflow.tracking import RunTracker
from schemas.data import ValidationConfig

MAX_REPORTED_FAILURES = 20  # unexpected rows listed per expectation in the summary


def validation_frame(rows: FilterResult) -> pd.DataFrame:
    """One small row of derived columns per data row: what the suite's expectations look at."""
    records: list[dict[str, Any]] = []
    for row in iter_rows(rows.table):
        derived: dict[str, Any] = {"source": row["source"], "line": row["line"]}
        if "messages" in row:
            prompt, response = prompt_and_response(row)
            roles = [message["role"] for message in row["messages"]]
            derived |= {
                "prompt_chars": len(prompt),
                "response_chars": len(response),
                "n_messages": len(roles),
                "n_assistant": roles.count("assistant"),
                "first_role": roles[0],
                "last_role": roles[-1],
            }
        else:
            derived["text_chars"] = len(row["text"])
            if "label" in row:
                derived["label"] = row["label"]
        records.append(derived)
    return pd.DataFrame.from_records(records)


def load_suite_spec(config: ValidationConfig, task: str) -> dict[str, Any]:
    """The builtin suite for the task plus the user's suite, plus the configured row-count floor."""
    spec = yaml.safe_load(builtin_suite_path(task).read_text())
    expectations = list(spec["expectations"])
    if config.suite is not None:
        user = yaml.safe_load(config.suite.read_text()) or {}
        if not isinstance(user, dict) or not isinstance(user.get("expectations"), list):
            raise DataError(f"{config.suite}: a suite needs an `expectations:` list", hint="see adapterflow/suites/sft.yaml")
        expectations += user["expectations"]
    expectations.append({"type": "expect_table_row_count_to_be_between", "kwargs": {"min_value": config.min_rows}})
    return {"name": spec["name"], "expectations": expectations}


def check_expectation_types(spec: dict[str, Any], source: str) -> None:
    """great-expectations silently drops unknown expectation types: name them instead."""
    from great_expectations.exceptions import ExpectationNotFoundError
    from great_expectations.expectations.registry import get_expectation_impl

    unknown = []
    for index, item in enumerate(spec["expectations"]):
        try:
            get_expectation_impl(item.get("type", "<missing type>"))
        except ExpectationNotFoundError:
            unknown.append(f"expectations[{index}].type={item.get('type')!r}")
    if unknown:
        raise DataError(f"{source}: unknown expectation types: {', '.join(unknown)}",
                        hint="see https://greatexpectations.io/expectations for the names")


def run_suite(frame: pd.DataFrame, spec: dict[str, Any], docs_dir: Path | None) -> dict[str, Any]:
    """Run the suite in an ephemeral context; return the JSON description of the result."""
    import great_expectations as gx

    cap_logger_levels("great_expectations", logging.WARNING)
    context = gx.get_context(mode="ephemeral")
    context.variables.progress_bars = {"globally": False}
    actions = []
    if docs_dir is not None:
        context.add_data_docs_site(
            site_name="adapterflow",
            site_config={
                "class_name": "SiteBuilder",
                "store_backend": {"class_name": "TupleFilesystemStoreBackend", "base_directory": str(docs_dir)},
                "site_index_builder": {"class_name": "DefaultSiteIndexBuilder"},
            },
        )
        actions.append(gx.checkpoint.UpdateDataDocsAction(name="data_docs", site_names=["adapterflow"]))
    batch = context.data_sources.add_pandas("adapterflow").add_dataframe_asset("rows")
    definition = batch.add_batch_definition_whole_dataframe("all")
    suite = context.suites.add(gx.ExpectationSuite(**spec))
    validation = context.validation_definitions.add(gx.ValidationDefinition(name="rows", data=definition, suite=suite))
    checkpoint = context.checkpoints.add(
        gx.Checkpoint(
            name="adapterflow",
            validation_definitions=[validation],
            actions=actions,
            result_format={"result_format": "COMPLETE", "unexpected_index_column_names": ["source", "line"]},
        )
    )
    result = checkpoint.run(batch_parameters={"dataframe": frame}).describe_dict()
    _remove_default_site(context)
    return result


def _remove_default_site(context: Any) -> None:
    # The ephemeral context registers a temporary `local_site`; don't leave it behind in /tmp.
    site = context.variables.data_docs_sites.get("local_site", {})
    folder = site.get("store_backend", {}).get("base_directory")
    if folder:
        shutil.rmtree(folder, ignore_errors=True)


def failed_expectations(result: dict[str, Any]) -> list[str]:
    """One line per failed expectation: its type, column and a few offending rows."""
    lines = []
    for validation in result["validation_results"]:
        for item in validation["expectations"]:
            if item["success"]:
                continue
            column = item["kwargs"].get("column", "table")
            outcome = item.get("result", {})
            where = [f"{row.get('source', '')}:{row.get('line')}" for row in outcome.get("unexpected_index_list") or []]
            detail = f"{outcome.get('unexpected_count', '')} unexpected" if where else f"observed {outcome.get('observed_value')}"
            rows = f" at {', '.join(where[:MAX_REPORTED_FAILURES])}" if where else ""
            lines.append(f"{item['expectation_type']}({column}): {detail}{rows}")
    return lines


def validate_rows(rows: FilterResult, config: ValidationConfig, out_dir: Path) -> ValidationResult:
    """Run the suite, write its JSON report and Data Docs, and say whether it passed."""
    spec = load_suite_spec(config, rows.table.task)
    check_expectation_types(spec, str(config.suite or builtin_suite_path(rows.table.task)))
    out_dir.mkdir(parents=True, exist_ok=True)
    docs_dir = out_dir / "data_docs"
    result = run_suite(validation_frame(rows), spec, docs_dir)
    report = out_dir / "validation.json"
    report.write_bytes(orjson.dumps(result, option=orjson.OPT_INDENT_2, default=str))
    evaluated = sum(len(v["expectations"]) for v in result["validation_results"])
    return ValidationResult(
        success=bool(result["success"]),
        evaluated=evaluated,
        failed=failed_expectations(result),
        report_path=str(report),
        docs_path=str(docs_dir) if docs_dir.exists() else None,
    )


@stage("validate", retries=1)
def validate(rows: FilterResult, config: ValidationConfig, run: RunContext) -> ValidationResult:
    """Gate the data: log the report and Data Docs, then stop the run if any expectation failed."""
    result = validate_rows(rows, config, Path(run.run_dir) / "validation")
    tracker = RunTracker(run.mlflow_run_id)
    tracker.log_artifact(result.report_path, "validation")
    if result.docs_path:
        tracker.log_artifact(result.docs_path, "validation/data_docs")
    tracker.log_metrics({"data/validation_success": float(result.success), "data/expectations_failed": len(result.failed)})
    logger = stage_logger()
    if not result.success:
        raise ValidationGateFailed(
            f"data validation failed ({len(result.failed)} of {result.evaluated} expectations):\n  "
            + "\n  ".join(result.failed),
            hint=f"fix the rows listed (full report: {result.report_path}) or relax data.validation",
        )
    logger.info("validation passed: %d expectations", result.evaluated)
    return result
