"""Validate: a great-expectations suite per input format over the cleaned rows; a failure stops the run
before any training, and says in words what failed, where (file:line) and which setting to change."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import orjson
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from adapterflow.core.errors import ValidationGateFailed
from adapterflow.core.logs import stage_logger
from adapterflow.data.expectations import (
    check_expectation_types,
    evaluated_count,
    expectation_sentence,
    failed_expectations,
    load_suite,
    run_suites,
)
from adapterflow.data.suites import builtin_suite_path
from adapterflow.data.tables import iter_batches
from adapterflow.data.text import flat_messages, prompts_and_responses
from adapterflow.orchestration.stage import stage
from adapterflow.storage.records import FilterResult, RunContext, ValidationResult
from adapterflow.tracking.run import METRIC_VALIDATION_SUCCESS, RunTracker
from schemas.data import ValidationConfig

TEXT_FORMAT = {"pretrain": "text", "classification": "classification"}
SHAPE_FIX = "fix these rows in their file, or check that data.sources[].format ({fmt}) is the format they are in"
# Words and fixes for the builtin suites' failing rows, by (expectation type, column): what: how a failing row
# is described (None: from the expectation's kwargs), fix: what to change.
BUILTIN_MEANING: dict[tuple[str, str | None], tuple[str | None, str]] = {
    ("expect_column_values_to_be_between", "prompt_chars"):
        ("have an empty prompt", "fill in their prompts, or set data.clean.min_prompt_chars to 1 to drop them"),
    ("expect_column_values_to_be_between", "response_chars"):
        ("have an empty answer", "fill in their answers, or set data.clean.min_response_chars to 1 to drop them"),
    ("expect_column_values_to_be_between", "n_messages"): (None, SHAPE_FIX),
    ("expect_column_values_to_be_between", "n_assistant"): ("have no assistant message", SHAPE_FIX),
    ("expect_column_values_to_be_in_set", "first_role"): ("start with neither a system nor a user message", SHAPE_FIX),
    ("expect_column_values_to_be_in_set", "last_role"):
        ("don't end with an assistant message", "end each conversation with the assistant's answer (the trained turn)"),
    ("expect_column_values_to_be_in_set", "alternating"):
        ("don't alternate user and assistant turns",
         "turns go user, assistant, user, ... after an optional system message: fix the turns of these rows"),
    ("expect_column_values_to_be_between", "text_chars"):
        ("have an empty text", "fill in or remove these rows, or set data.clean.{bound} to 1 to drop them"),
    ("expect_column_values_to_be_between", "words"): ("have no words", "fill in or remove these rows"),
    ("expect_column_values_to_be_between", "printable_share"):
        (None, "they look like binary or mis-encoded text: re-export them as UTF-8 or remove them"),
    ("expect_column_values_to_not_be_null", "label"): ("have no label", "give these rows a label or remove them"),
    ("expect_column_unique_value_count_to_be_between", "label"):
        (None, "classification needs at least two classes: add rows of another label"),
    ("expect_column_values_to_be_between", "label_rows"):
        ("have a label no other row has", "a class needs rows for train and eval: add rows of these labels"),
    ("expect_table_row_count_to_be_between", None): (None, "add rows of this format"),
}


def chat_columns(batch: pa.RecordBatch) -> dict[str, np.ndarray]:
    """Derived per-row columns of chat-style rows, computed column-wise."""
    offsets, structs = flat_messages(batch.column("messages"))
    roles = np.asarray(structs.field("role").to_pylist(), dtype=object)
    counts = np.diff(offsets)
    rows = np.repeat(np.arange(batch.num_rows), counts)
    prompts, responses = prompts_and_responses(batch)
    is_user, is_assistant = roles == "user", roles == "assistant"
    starts, ends = offsets[:-1], offsets[1:]
    nonempty = counts > 0
    first = np.where(nonempty, roles[np.minimum(starts, max(len(roles) - 1, 0))] if len(roles) else "", "")
    last = np.where(nonempty, roles[np.maximum(ends - 1, 0)] if len(roles) else "", "")
    # After an optional leading system message, roles go user, assistant, user, ...
    position = np.arange(len(roles)) - np.repeat(starts, counts)
    after_system = position - np.repeat(first == "system", counts).astype(int)
    expected = np.where(after_system % 2 == 0, "user", "assistant")
    in_order = (roles == expected) | (after_system < 0)
    alternating = np.bincount(rows[~in_order], minlength=batch.num_rows) == 0
    return {
        "prompt_chars": pc.utf8_length(prompts).to_numpy(zero_copy_only=False),
        "response_chars": pc.utf8_length(responses).to_numpy(zero_copy_only=False),
        "n_messages": counts,
        "n_user": np.bincount(rows[is_user], minlength=batch.num_rows),
        "n_assistant": np.bincount(rows[is_assistant], minlength=batch.num_rows),
        "first_role": first, "last_role": last, "alternating": alternating,
    }


def text_columns(batch: pa.RecordBatch) -> dict[str, np.ndarray]:
    texts = batch.column("text")
    chars = pc.utf8_length(texts).to_numpy(zero_copy_only=False)
    printable = [sum(ch.isprintable() or ch in "\n\t" for ch in text) for text in texts.to_pylist()]
    columns = {
        "text_chars": chars,
        "words": pc.list_value_length(pc.utf8_split_whitespace(texts)).to_numpy(zero_copy_only=False),
        "printable_share": np.asarray(printable) / np.maximum(chars, 1),
    }
    if "label" in batch.schema.names:
        columns["label"] = np.asarray(batch.column("label").to_pylist(), dtype=object)
    return columns


def validation_frames(rows: FilterResult, formats: dict[str, str]) -> dict[str, pd.DataFrame]:
    """One frame of derived columns per input format, keyed by format; rows carry source and line."""
    parts: list[pd.DataFrame] = []
    for batch in iter_batches(rows.table):
        derived = chat_columns(batch) if "messages" in batch.schema.names else text_columns(batch)
        frame = pd.DataFrame({"source": batch.column("source").to_pylist(), "line": batch.column("line").to_numpy(), **derived})
        parts.append(frame)
    frame = pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(columns=["source", "line"])
    if "label" in frame.columns:
        frame["label_rows"] = frame.groupby("label")["label"].transform("size")
    default = TEXT_FORMAT.get(rows.table.task, "chat")
    frame["format"] = frame["source"].map(formats).fillna(default) if len(frame) else default
    return {fmt: part.drop(columns="format").reset_index(drop=True) for fmt, part in frame.groupby("format")} or {default: frame}


def builtin_meta(fmt: str, expectation: dict) -> dict[str, str]:
    """The `meta` that `expectation_sentence` words a builtin expectation's failure with."""
    kind, column = expectation["type"], expectation.get("kwargs", {}).get("column")
    what, fix = BUILTIN_MEANING.get((kind, column), (None, SHAPE_FIX))
    # raw text is what clean bounds as the response; a classification text is the prompt
    bound = "min_response_chars" if fmt == "text" else "min_prompt_chars"
    return {"rows": f"{fmt} rows", "fix": fix.format(fmt=fmt, bound=bound), **({"what": what} if what else {})}


def suite_meta(fmt: str, expectation: dict, suite: Path) -> dict[str, str]:
    """A user expectation's `meta`: its own words and fix first, else a pointer to the suite file."""
    default = {"rows": f"{fmt} rows", "fix": f"fix these rows, or change this expectation in data.validation.suite ({suite})"}
    return {**default, **(expectation.get("meta") or {})}


def suites_for(formats: list[str], config: ValidationConfig) -> dict[str, list[dict]]:
    """Each format's builtin suite, plus the user's expectations, plus the row-count floor, each with the
    words and fix its failure is reported with."""
    extra = load_suite(config.suite) if config.suite else []
    suites = {}
    for fmt in formats:
        builtin = [*load_suite(builtin_suite_path(fmt)),
                   {"type": "expect_table_row_count_to_be_between", "kwargs": {"min_value": 1}}]
        expectations = [{**item, "meta": builtin_meta(fmt, item)} for item in builtin]
        expectations += [{**item, "meta": suite_meta(fmt, item, config.suite)} for item in extra]
        check_expectation_types(expectations, str(config.suite or builtin_suite_path(fmt)))
        suites[fmt] = expectations
    return suites


def row_count_failure(total: int, config: ValidationConfig) -> str | None:
    """The sentence for too few rows across all formats, or None."""
    if total >= config.min_rows:
        return None
    return expectation_sentence({
        "expectation_type": "expect_table_row_count_to_be_between", "kwargs": {"min_value": config.min_rows},
        "result": {"observed_value": total},
        "meta": {"rows": "rows are left after clean, PII and dedup drops",
                 "fix": "add data, or lower data.validation.min_rows"},
    }, "all formats")


def validate_rows(rows: FilterResult, config: ValidationConfig, formats: dict[str, str], out_dir: Path) -> ValidationResult:
    """Run the suites, write their JSON report and Data Docs, and say whether all passed."""
    frames = validation_frames(rows, formats)
    suites = suites_for(list(frames), config)
    out_dir.mkdir(parents=True, exist_ok=True)
    docs_dir = out_dir / "data_docs"
    results = run_suites(frames, suites, docs_dir)
    failed = [line for name, result in results.items() for line in failed_expectations(name, result)]
    total = sum(len(frame) for frame in frames.values())
    if too_few := row_count_failure(total, config):  # across formats, so checked here rather than in each suite
        failed.append(too_few)
    report = out_dir / "validation.json"
    report.write_bytes(orjson.dumps(results, option=orjson.OPT_INDENT_2, default=str))
    return ValidationResult(
        success=not failed, evaluated=evaluated_count(results) + 1, failed=failed, report_path=str(report),
        docs_path=str(docs_dir) if docs_dir.exists() else None,
    )


def gate_message(result: ValidationResult) -> str:
    """What stops the run: each failed expectation as a sentence."""
    return (f"data validation failed: {len(result.failed)} of {result.evaluated} expectations\n"
            + "\n".join(f"  - {line}" for line in result.failed))


def gate_hint(result: ValidationResult) -> str:
    docs = f"; Data Docs: {result.docs_path}/index.html" if result.docs_path else ""
    return f"each line ends with what to change; every failing row is in {result.report_path}{docs}"


@stage("validate", retries=1)
def validate(rows: FilterResult, config: ValidationConfig, formats: dict[str, str], run: RunContext) -> ValidationResult:
    """Gate the data: log the report and Data Docs, then stop the run if any expectation failed."""
    result = validate_rows(rows, config, formats, Path(run.run_dir) / "validation")
    tracker = RunTracker.for_run(run)  # the JSON result quotes failing values: redacted like the rows
    tracker.log_artifact(result.report_path, "validation")
    if result.docs_path:
        tracker.log_artifact(result.docs_path, "validation/data_docs")
    tracker.log_metrics({METRIC_VALIDATION_SUCCESS: float(result.success), "data/expectations_failed": len(result.failed)})
    if not result.success:
        raise ValidationGateFailed(gate_message(result), hint=gate_hint(result))
    stage_logger().info("validation passed: %d expectations", result.evaluated)
    return result
