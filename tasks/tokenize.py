"""Tokenize: chat template and response-only labels (sft), chunked raw text (pretrain) or text and class
index (classification), cached by content.

With `tokenize.max_length: auto` the training rows are measured first and the length is chosen from their
distribution (adapterflow/tokenization/lengths.py). The cache key is (dataset fingerprint, tokenizer and chat-template
hash, tokenize settings, the model's context): an unchanged re-run skips the work, and any change to one of
them tokenizes again.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from adapterflow.core.hashing import cache_key, code_key
from adapterflow.core.logs import stage_logger
from adapterflow.data.tables import iter_batches
from adapterflow.models.base import load_tokenizer
from adapterflow.orchestration.stage import stage
from adapterflow.storage.records import BaseModelRef, DataTable, RunContext, SplitResult, TokenizedData
from adapterflow.storage.store import Storage, run_storage
from adapterflow.tokenization.chat import ChatTokenizer, TokenizedBatch, apply_template_choice, tokenizer_fingerprint
from adapterflow.tokenization.lengths import (
    LengthChoice,
    choose_max_length,
    length_cap,
    length_percentiles,
    measures_lengths,
    model_context,
)
from adapterflow.tokenization.task_tokenizers import ClassificationTokenizer, TextTokenizer
from adapterflow.tracking.run import RunTracker
from schemas.tokenize import TokenizeConfig

STATS_FILE = "stats.json"  # written last: its presence marks a complete folder
BATCH_ROWS = 16384  # large batches keep every core of the Rust tokenizer busy
TOKENS_SCHEMA = pa.schema([("input_ids", pa.list_(pa.int32())), ("labels", pa.list_(pa.int32()))])
# per input example (see TokenizedBatch), with the row's source file and line so checks can point at it
EXAMPLES_SCHEMA = pa.schema([
    ("source", pa.string()), ("line", pa.int64()), ("length", pa.int32()), ("tokens", pa.int32()),
    ("label_tokens", pa.int32()), ("overlong", pa.bool_()), ("truncated", pa.bool_()), ("end_of_turn", pa.bool_()),
    ("kept", pa.bool_()),
])


def tokenized_key(split: SplitResult, tokenizer_hash: str, config: TokenizeConfig, context: int | None) -> str:
    # The chat template is part of the tokenizer hash (the one in effect, whoever set it); the model's
    # context can cap what max_length auto chooses; code_key covers the code and library versions.
    settings = config.model_dump(exclude={"chat_template"})
    return cache_key("tokenized", code_key(__name__), split.fingerprint, tokenizer_hash, settings, context)


TaskTokenizer = ChatTokenizer | TextTokenizer | ClassificationTokenizer


def tokenize_chunk(tokenizer: TaskTokenizer, chunk: pa.RecordBatch) -> TokenizedBatch:
    if isinstance(tokenizer, ChatTokenizer):
        return tokenizer.tokenize_messages(chunk.column("messages"))
    if isinstance(tokenizer, TextTokenizer):
        return tokenizer(chunk.column("text").to_pylist())
    return tokenizer(chunk.column("text").to_pylist(), chunk.column("label").to_pylist())


def tokenize_table(table: DataTable, tokenizer: TaskTokenizer, out_path: Path) -> tuple[int, Counter[str], Counter[str]]:
    """Tokenize one split to Parquet; return rows written, drops by reason and token statistics.

    Next to it, `<split>_examples.parquet` holds per-example statistics (kept or not) for the token checks.
    """
    dropped: Counter[str] = Counter()
    stats: Counter[str] = Counter()
    examples: list[pa.Table] = []
    rows_written = 0
    with pq.ParquetWriter(out_path, TOKENS_SCHEMA) as writer:
        for chunk in iter_batches(table, batch_size=BATCH_ROWS):
            batch = tokenize_chunk(tokenizer, chunk)
            examples.append(example_table(chunk, batch))
            dropped.update(batch.dropped)
            kept = batch.kept
            stats.update(examples=chunk.num_rows, truncated=int(batch.truncated.sum()),
                         with_end_of_turn=int((batch.end_of_turn & kept).sum()),
                         tokens=int(batch.tokens[kept].sum()), label_tokens=int(batch.label_tokens[kept].sum()))
            if batch.rows:
                offsets = pa.array(batch.offsets.astype(np.int32))
                # classification: one label (the class index) per example; otherwise one per token
                one_each = isinstance(tokenizer, ClassificationTokenizer)
                label_offsets = pa.array(np.arange(batch.rows + 1, dtype=np.int32)) if one_each else offsets
                writer.write_table(pa.table({
                    "input_ids": pa.ListArray.from_arrays(offsets, pa.array(batch.ids, pa.int32())),
                    "labels": pa.ListArray.from_arrays(label_offsets, pa.array(batch.labels, pa.int32())),
                }, schema=TOKENS_SCHEMA))
                rows_written += batch.rows
    pq.write_table(pa.concat_tables(examples) if examples else EXAMPLES_SCHEMA.empty_table(), examples_path(out_path))
    return rows_written, dropped, stats


def example_table(chunk: pa.RecordBatch, batch: TokenizedBatch) -> pa.Table:
    """Per-example statistics of one chunk, with each row's source and line."""
    columns = {"source": chunk.column("source").cast(pa.string()), "line": chunk.column("line")}
    columns |= {name: getattr(batch, name) for name in EXAMPLES_SCHEMA.names if name not in columns}
    return pa.table(columns, schema=EXAMPLES_SCHEMA)


def examples_path(tokens_path: Path) -> Path:
    return tokens_path.with_name(tokens_path.stem + "_examples.parquet")


def token_lengths(table: DataTable, tokenizer: TaskTokenizer) -> np.ndarray:
    """Tokens per row before any cut, for rows that tokenize (a row the template can't render has none)."""
    parts = [tokenize_chunk(tokenizer, chunk).length for chunk in iter_batches(table, batch_size=BATCH_ROWS)]
    lengths = np.concatenate(parts) if parts else np.zeros(0, np.int32)
    return lengths[lengths > 0]


def label_names(table: DataTable) -> list[str]:
    """Classification: the training split's classes, sorted (a class's index is its position)."""
    found: set[str] = set()
    for chunk in iter_batches(table, batch_size=BATCH_ROWS):
        found.update(chunk.column("label").unique().to_pylist())
    return sorted(found)


def task_tokenizer(tokenizer, task: str, config: TokenizeConfig, labels: list[str], max_length: int) -> TaskTokenizer:
    drop = config.overlong == "drop"
    if task == "pretrain":
        return TextTokenizer(tokenizer, max_length)
    if task == "classification":
        return ClassificationTokenizer(tokenizer, max_length, {name: index for index, name in enumerate(labels)}, drop)
    apply_template_choice(tokenizer, config.chat_template)
    return ChatTokenizer(tokenizer, max_length, config.system_prompt, config.train_on_prompts, drop)


def select_max_length(split: SplitResult, tokenizer: TaskTokenizer, config: TokenizeConfig,
                      context: int | None) -> LengthChoice:
    """The configured max_length, or auto's choice from the training rows, measured at the longest allowed."""
    measured = None
    if measures_lengths(config, split.train.task):
        tokenizer.max_length = length_cap(config.max_length_limit, context)[0]
        measured = token_lengths(split.train, tokenizer)
    return choose_max_length(config, split.train.task, context, measured)


def tokenize_splits(split: SplitResult, base: BaseModelRef, config: TokenizeConfig, storage: Storage) -> TokenizedData:
    """Tokenize train, eval and validation into the store's tokenized/<key>/, or reuse what is there."""
    task = split.train.task
    tokenizer = load_tokenizer(base.path)
    labels = label_names(split.train) if task == "classification" else []
    context = model_context(base.path)
    fixed = config.max_length if config.max_length != "auto" else 0  # auto: set by select_max_length
    chosen = task_tokenizer(tokenizer, task, config, labels, fixed)
    key = tokenized_key(split, tokenizer_fingerprint(tokenizer), config, context)
    uri = storage.uri("tokenized", key)
    found = storage.lookup("tokenized", key, STATS_FILE)
    if found is not None:
        saved = json.loads((found / STATS_FILE).read_text())
        return TokenizedData(key=key, uri=uri, skipped=True, **saved)
    choice = select_max_length(split, chosen, config, context)
    chosen.max_length = choice.max_length
    staging = storage.staging_dir("tokenized")
    counts, dropped, stats = {}, Counter(), Counter()
    sides = {"train": split.train, "eval": split.eval, "validation": split.validation}
    for name, table in ((name, table) for name, table in sides.items() if table is not None):
        counts[name], split_dropped, split_stats = tokenize_table(table, chosen, staging / f"{name}.parquet")
        dropped.update(split_dropped)
        stats.update(split_stats)
    train_lengths = pq.read_table(staging / "train_examples.parquet", columns=["length"]).column("length").to_numpy()
    summary = {
        "task": task,
        "label_names": labels,
        "train_rows": counts["train"],
        "eval_rows": counts["eval"],
        "validation_rows": counts.get("validation", 0),
        "dropped": dict(dropped),
        "max_length": choice.max_length,
        "max_length_rule": choice.rule,
        "stats": {
            "truncated_share": stats["truncated"] / max(stats["examples"], 1),
            "end_of_turn_share": stats["with_end_of_turn"] / max(sum(counts.values()), 1),
            "tokens": float(stats["tokens"]),
            "label_tokens": float(stats["label_tokens"]),
        } | {f"length_{name}": value for name, value in length_percentiles(train_lengths[train_lengths > 0]).items()},
    }
    (staging / STATS_FILE).write_text(json.dumps(summary, indent=2))
    storage.publish(staging, "tokenized", key, STATS_FILE)  # a concurrent run may have published the same content
    return TokenizedData(key=key, uri=uri, **summary)


def prompt_shift(table: DataTable, tokenizer: ChatTokenizer, run_examples: Path) -> int:
    """Tokens a conversation gains (negative: loses) with `tokenizer`'s system prompt over the run's eval rows
    (their per-example statistics at `run_examples`): the largest change over the rows both render."""
    parts = [tokenize_chunk(tokenizer, chunk).length for chunk in iter_batches(table, batch_size=BATCH_ROWS)]
    theirs = np.concatenate(parts) if parts else np.zeros(0, np.int32)
    ours = pq.read_table(run_examples, columns=["length"]).column("length").to_numpy()
    both = (theirs > 0) & (ours > 0)
    return int((theirs[both].astype(np.int64) - ours[both]).max()) if both.any() else 0


def tokenize_eval_with_prompt(split: SplitResult, base: BaseModelRef, config: TokenizeConfig, tokenized: TokenizedData,
                              system_prompt: str | None, storage: Storage) -> TokenizedData:
    """The sft eval split tokenized as `tokenized` was but with another system prompt (a champion's own), into the
    store's tokenized/<key>/, or reused from there.

    The cut moves by the tokens the prompt adds or saves, so each example keeps the answer tokens the run's eval
    rows kept, and the same examples are over-long."""
    own = config.model_copy(update={"system_prompt": system_prompt})
    tokenizer = load_tokenizer(base.path)
    chosen = task_tokenizer(tokenizer, "sft", own, [], tokenized.max_length)
    key = cache_key(tokenized_key(split, tokenizer_fingerprint(tokenizer), own, model_context(base.path)), "eval",
                    tokenized.max_length)
    update = {"key": key, "uri": storage.uri("tokenized", key)}
    found = storage.lookup("tokenized", key, STATS_FILE)
    if found is not None:
        return tokenized.model_copy(update=update | json.loads((found / STATS_FILE).read_text()) | {"skipped": True})
    chosen.max_length += prompt_shift(split.eval, chosen, examples_path(storage.fetch(tokenized.uri) / "eval.parquet"))
    staging = storage.staging_dir("tokenized")
    summary = {"eval_rows": tokenize_table(split.eval, chosen, staging / "eval.parquet")[0]}
    (staging / STATS_FILE).write_text(json.dumps(summary))
    storage.publish(staging, "tokenized", key, STATS_FILE)
    return tokenized.model_copy(update=update | summary | {"skipped": False})


@stage("tokenize", retries=2)
def tokenize(split: SplitResult, base: BaseModelRef, config: TokenizeConfig, run: RunContext) -> TokenizedData:
    """Tokenize the splits with the base model's tokenizer and log token statistics and the length chosen."""
    result = tokenize_splits(split, base, config, run_storage(run))
    RunTracker(run.mlflow_run_id).log_metrics(
        {f"data/{name}": value for name, value in result.stats.items()}
        | {f"data/dropped/{reason}": count for reason, count in result.dropped.items()}
        | {"data/train_rows": result.train_rows, "data/eval_rows": result.eval_rows,
           "data/validation_rows": result.validation_rows, "data/max_length": result.max_length}
    )
    logger = stage_logger()
    stats = result.stats
    logger.info(
        "training rows' token lengths: p50 %.0f, p95 %.0f, p99 %.0f, max %.0f; max_length %d (%s)",
        stats["length_p50"], stats["length_p95"], stats["length_p99"], stats["length_max"], result.max_length,
        LengthChoice(result.max_length, result.max_length_rule).describe(config.length_coverage),
    )
    logger.info(
        "tokenized %d train / %d eval examples%s (%.0f tokens, %.1f%% truncated, %d dropped as over-long)",
        result.train_rows, result.eval_rows, " from cache" if result.skipped else "",
        stats["tokens"], 100 * stats["truncated_share"], result.dropped.get("tokenize.overlong", 0),
    )
    return result
