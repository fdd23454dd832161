"""Check tokens: expectations on the tokenized examples, before any GPU time is spent.

A silent chat-template bug (no end-of-turn token in the labels) makes models that never stop talking;
heavy truncation or examples with nothing to learn waste the run. Each example counts under one cause: an
over-long one (truncated or dropped, per tokenize.overlong) as over-long only, one with nothing to learn as
such, and the end-of-turn check looks only at the examples kept whole. great-expectations runs the checks
(its JSON report is logged); a failure is told as a sentence with the share, the limit, a few rows by source
file and line, and the config key to change.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import orjson
import pandas as pd
import pyarrow.parquet as pq

from adapterflow.core.errors import ValidationGateFailed
from adapterflow.core.logs import stage_logger
from adapterflow.data.expectations import evaluated_count, run_suites
from adapterflow.orchestration.stage import stage
from adapterflow.storage.records import RunContext, TokenizedData, ValidationResult
from adapterflow.storage.store import run_storage
from adapterflow.tokenization.lengths import LengthChoice
from adapterflow.tracking.run import RunTracker
from schemas.data import ValidationConfig

SHOWN_ROWS = 3  # rows named per failed check
OVERLONG_REMEDY = {
    "fixed": "set tokenize.max_length: auto, or at least {p95:,} (the p95)",
    "coverage": "raise tokenize.length_coverage",
    "limit": "raise tokenize.max_length_limit (auto stopped at it)",
    "context": "the model takes at most {max_length:,} tokens: shorten or split these examples",
}


def token_frame(tokenized_dir: Path) -> pd.DataFrame:
    """Per-example statistics of both splits, dropped examples included, with the rows each check counts."""
    frames = []
    for name in ("train", "eval"):
        frame = pq.read_table(tokenized_dir / f"{name}_examples.parquet").to_pandas()
        frame["split"] = name
        frames.append(frame)
    frame = pd.concat(frames, ignore_index=True)
    frame["no_label"] = (frame["label_tokens"] == 0) & ~frame["overlong"]
    frame["whole"] = frame["kept"] & ~frame["overlong"]
    return frame


def token_suite(config: ValidationConfig, chat: bool) -> list[dict]:
    expectations = [
        {"type": "expect_column_mean_to_be_between", "kwargs": {"column": "overlong", "max_value": config.max_truncated_share}},
        {"type": "expect_column_mean_to_be_between", "kwargs": {"column": "no_label", "max_value": config.max_no_label_share}},
    ]
    if chat and config.require_end_of_turn:
        expectations.append({"type": "expect_column_values_to_be_in_set",
                             "kwargs": {"column": "end_of_turn", "value_set": [True], "row_condition": "whole == True",
                                        "condition_parser": "pandas"}})
    return expectations


def percent(share: float) -> str:
    return f"{100 * share:.3g}%"


def rows_named(rows: pd.DataFrame) -> str:
    """A few rows as `source:line (split, N tokens)`, and how many more there are."""
    named = [f"{row.source}:{row.line} ({row.split}, {row.length:,} tokens)" for row in rows.head(SHOWN_ROWS).itertuples()]
    more = f" and {len(rows) - SHOWN_ROWS:,} more" if len(rows) > SHOWN_ROWS else ""
    return ", ".join(named) + more


def overlong_failure(frame: pd.DataFrame, config: ValidationConfig, choice: LengthChoice) -> str:
    rows = frame[frame["overlong"]].sort_values("length", ascending=False, kind="stable")
    lengths = frame.loc[frame["length"] > 0, "length"]
    p95, longest = (int(np.ceil(np.percentile(lengths, 95))), int(lengths.max())) if len(lengths) else (0, 0)
    fate = "truncated" if rows["truncated"].any() else "dropped (tokenize.overlong: drop)"
    remedy = OVERLONG_REMEDY.get(choice.rule, OVERLONG_REMEDY["fixed"]).format(p95=p95, max_length=choice.max_length)
    return (f"{percent(len(rows) / max(len(frame), 1))} of examples ({len(rows):,} of {len(frame):,}) are longer than "
            f"{choice.max_length:,} tokens and were {fate} (p95 {p95:,}, longest {longest:,}; limit "
            f"{percent(config.max_truncated_share)}): {rows_named(rows)}. Fix: {remedy}, or allow more with "
            "data.validation.max_truncated_share")


def no_label_failure(frame: pd.DataFrame, config: ValidationConfig, chat: bool) -> str:
    rows = frame[frame["no_label"]]
    nothing = "no response token" if chat else "nothing (an empty text, or a class the training split lacks)"
    fix = "give every row a non-empty assistant answer" if chat else "fix or remove these rows"
    return (f"{percent(len(rows) / max(len(frame), 1))} of examples ({len(rows):,} of {len(frame):,}) have {nothing} to "
            f"train on and were dropped (limit {percent(config.max_no_label_share)}): {rows_named(rows)}. "
            f"Fix: {fix}, or allow more with data.validation.max_no_label_share")


def end_of_turn_failure(frame: pd.DataFrame, choice: LengthChoice) -> str:
    whole = frame[frame["whole"]]
    rows = whole[~whole["end_of_turn"]]
    return (f"{len(rows):,} of {len(whole):,} examples that fit in {choice.max_length:,} tokens "
            f"({percent(len(rows) / max(len(whole), 1))}) don't train on the end-of-turn token (limit: none): "
            f"{rows_named(rows)}. The chat template does not close answers with its end-of-turn marker. Fix: set "
            "tokenize.chat_template (e.g. chatml), or data.validation.require_end_of_turn: false")


def gate_failures(frame: pd.DataFrame, result: dict, config: ValidationConfig, chat: bool,
                  choice: LengthChoice) -> list[str]:
    """One sentence per failed expectation of the token suite's great-expectations result."""
    failures = []
    for validation in result["validation_results"]:
        for item in validation["expectations"]:
            if item["success"]:
                continue
            column = item["kwargs"]["column"]
            if column == "overlong":
                failures.append(overlong_failure(frame, config, choice))
            elif column == "no_label":
                failures.append(no_label_failure(frame, config, chat))
            else:
                failures.append(end_of_turn_failure(frame, choice))
    return failures


def check_token_stats(tokenized_dir: Path, config: ValidationConfig, chat: bool, out_dir: Path,
                      choice: LengthChoice) -> ValidationResult:
    frame = token_frame(tokenized_dir)
    results = run_suites({"tokens": frame}, {"tokens": token_suite(config, chat)}, None)
    out_dir.mkdir(parents=True, exist_ok=True)
    report = out_dir / "token_checks.json"
    report.write_bytes(orjson.dumps(results, option=orjson.OPT_INDENT_2, default=str))
    failed = gate_failures(frame, results["tokens"], config, chat, choice)
    return ValidationResult(success=not failed, evaluated=evaluated_count(results), failed=failed,
                            report_path=str(report), docs_path=None)


@stage("check_tokens", retries=1)
def check_tokens(tokenized: TokenizedData, config: ValidationConfig, chat: bool, run: RunContext) -> ValidationResult:
    """Stop the run when too many examples are over-long or unlearnable, or a template drops end-of-turn."""
    choice = LengthChoice(tokenized.max_length, tokenized.max_length_rule)
    result = check_token_stats(run_storage(run).fetch(tokenized.uri), config, chat, Path(run.run_dir) / "validation",
                               choice)
    RunTracker(run.mlflow_run_id).log_artifact(result.report_path, "validation")
    if not result.success:
        raise ValidationGateFailed(
            f"token checks failed ({len(result.failed)} of {result.evaluated}):\n  - " + "\n  - ".join(result.failed),
            hint=f"rows are named by source file and line; the full report is {result.report_path}",
        )
    stage_logger().info("token checks passed: %d expectations", result.evaluated)
    return result
