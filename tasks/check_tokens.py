"""Check tokens: expectations on the tokenized examples, before any GPU time is spent.

A silent chat-template bug (no end-of-turn token in the labels) makes models that never stop talking;
heavy truncation or examples with nothing to learn waste the run. These are checked per example.
"""

from __future__ import annotations

from pathlib import Path

import orjson
import pandas as pd
import pyarrow.parquet as pq

from adapterflow.data.expectations import evaluated_count, failed_expectations, run_suites
from adapterflow.errors import ValidationGateFailed
from adapterflow.records import RunContext, TokenizedData, ValidationResult
from adapterflow.stage import stage, stage_logger
from adapterflow.storage import run_storage
from adapterflow.tracking import RunTracker
from schemas.data import ValidationConfig


def token_frame(tokenized_dir: Path) -> pd.DataFrame:
    """Per-example statistics of both splits, dropped examples included."""
    frames = []
    for name in ("train", "eval"):
        frame = pq.read_table(tokenized_dir / f"{name}_examples.parquet").to_pandas()
        frame["split"] = name
        frames.append(frame)
    frame = pd.concat(frames, ignore_index=True)
    frame["no_label"] = frame["label_tokens"] == 0
    return frame


def token_suite(config: ValidationConfig, chat: bool) -> list[dict]:
    expectations = [
        {"type": "expect_column_mean_to_be_between", "kwargs": {"column": "truncated", "max_value": config.max_truncated_share}},
        {"type": "expect_column_mean_to_be_between", "kwargs": {"column": "no_label", "max_value": config.max_no_label_share}},
    ]
    if chat and config.require_end_of_turn:
        expectations.append({"type": "expect_column_values_to_be_in_set",
                             "kwargs": {"column": "end_of_turn", "value_set": [True], "row_condition": "no_label == False",
                                        "condition_parser": "pandas"}})
    return expectations


def check_token_stats(tokenized_dir: Path, config: ValidationConfig, chat: bool, out_dir: Path) -> ValidationResult:
    frame = token_frame(tokenized_dir)
    results = run_suites({"tokens": frame}, {"tokens": token_suite(config, chat)}, None)
    out_dir.mkdir(parents=True, exist_ok=True)
    report = out_dir / "token_checks.json"
    report.write_bytes(orjson.dumps(results, option=orjson.OPT_INDENT_2, default=str))
    failed = failed_expectations("tokens", results["tokens"])
    return ValidationResult(success=not failed, evaluated=evaluated_count(results), failed=failed,
                            report_path=str(report), docs_path=None)


@stage("check_tokens", retries=1)
def check_tokens(tokenized: TokenizedData, config: ValidationConfig, chat: bool, run: RunContext) -> ValidationResult:
    """Stop the run when too many examples are truncated or unlearnable, or a template drops end-of-turn."""
    result = check_token_stats(run_storage(run).fetch(tokenized.uri), config, chat, Path(run.run_dir) / "validation")
    RunTracker(run.mlflow_run_id).log_artifact(result.report_path, "validation")
    if not result.success:
        raise ValidationGateFailed(
            "token checks failed:\n  " + "\n  ".join(result.failed),
            hint="raise tokenize.max_length, fix the chat template, or relax data.validation "
                 "(max_truncated_share, max_no_label_share, require_end_of_turn)",
        )
    stage_logger().info("token checks passed: %d expectations", result.evaluated)
    return result
