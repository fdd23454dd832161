"""Tokenize: chat template and response-only labels (sft), chunked raw text (pretrain) or text and class
index (classification), cached by content.

The cache key is (dataset fingerprint, tokenizer and chat-template hash, tokenize settings): an
unchanged re-run skips the work, and any change to one of them tokenizes again.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from adapterflow.data.tables import iter_batches
from adapterflow.hashing import cache_key
from adapterflow.models.base import load_tokenizer
from adapterflow.records import BaseModelRef, DataTable, RunContext, SplitResult, TokenizedData
from adapterflow.stage import stage, stage_logger
from adapterflow.storage import Storage, run_storage
from adapterflow.task_tokenizers import ClassificationTokenizer, TextTokenizer
from adapterflow.tokenization import ChatTokenizer, TokenizedBatch, apply_template_choice, tokenizer_fingerprint
from adapterflow.tracking import RunTracker
from schemas.tokenize import TokenizeConfig

TOKENIZE_VERSION = 5  # bump when the output of tokenization changes for the same inputs
STATS_FILE = "stats.json"  # written last: its presence marks a complete folder
BATCH_ROWS = 16384  # large batches keep every core of the Rust tokenizer busy
TOKENS_SCHEMA = pa.schema([("input_ids", pa.list_(pa.int32())), ("labels", pa.list_(pa.int32()))])
EXAMPLES_SCHEMA = pa.schema([("tokens", pa.int32()), ("label_tokens", pa.int32()), ("truncated", pa.bool_()),
                             ("end_of_turn", pa.bool_())])


def tokenized_key(split: SplitResult, tokenizer_hash: str, config: TokenizeConfig) -> str:
    # The chat template is part of the tokenizer hash (the one in effect, whoever set it).
    settings = config.model_dump(exclude={"chat_template"})
    return cache_key("tokenized", TOKENIZE_VERSION, split.fingerprint, tokenizer_hash, settings)


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
            count = chunk.num_rows
            examples.append(pa.table({"tokens": batch.tokens, "label_tokens": batch.label_tokens,
                                      "truncated": batch.truncated, "end_of_turn": batch.end_of_turn},
                                     schema=EXAMPLES_SCHEMA))
            dropped.update(batch.dropped)
            kept = batch.label_tokens > 0
            stats.update(examples=count, truncated=int(batch.truncated.sum()),
                         with_end_of_turn=int((batch.end_of_turn & kept).sum()),
                         tokens=int(batch.tokens[kept].sum()), label_tokens=int(batch.label_tokens.sum()))
            if batch.kept:
                offsets = pa.array(batch.offsets.astype(np.int32))
                # classification: one label (the class index) per example; otherwise one per token
                one_each = isinstance(tokenizer, ClassificationTokenizer)
                label_offsets = pa.array(np.arange(batch.kept + 1, dtype=np.int32)) if one_each else offsets
                writer.write_table(pa.table({
                    "input_ids": pa.ListArray.from_arrays(offsets, pa.array(batch.ids, pa.int32())),
                    "labels": pa.ListArray.from_arrays(label_offsets, pa.array(batch.labels, pa.int32())),
                }, schema=TOKENS_SCHEMA))
                rows_written += batch.kept
    pq.write_table(pa.concat_tables(examples) if examples else EXAMPLES_SCHEMA.empty_table(), examples_path(out_path))
    return rows_written, dropped, stats


def examples_path(tokens_path: Path) -> Path:
    return tokens_path.with_name(tokens_path.stem + "_examples.parquet")


def label_names(table: DataTable) -> list[str]:
    """Classification: the training split's classes, sorted (a class's index is its position)."""
    found: set[str] = set()
    for chunk in iter_batches(table, batch_size=BATCH_ROWS):
        found.update(chunk.column("label").unique().to_pylist())
    return sorted(found)


def task_tokenizer(tokenizer, task: str, config: TokenizeConfig, labels: list[str]) -> TaskTokenizer:  # noqa: ANN001
    if task == "pretrain":
        return TextTokenizer(tokenizer, config.max_length)
    if task == "classification":
        return ClassificationTokenizer(tokenizer, config.max_length, {name: index for index, name in enumerate(labels)})
    apply_template_choice(tokenizer, config.chat_template)
    return ChatTokenizer(tokenizer, config.max_length, config.system_prompt, config.train_on_prompts)


def tokenize_splits(split: SplitResult, base: BaseModelRef, config: TokenizeConfig, storage: Storage) -> TokenizedData:
    """Tokenize train and eval into the store's tokenized/<key>/, or reuse what is there."""
    task = split.train.task
    tokenizer = load_tokenizer(base.path)
    labels = label_names(split.train) if task == "classification" else []
    chosen = task_tokenizer(tokenizer, task, config, labels)
    key = tokenized_key(split, tokenizer_fingerprint(tokenizer), config)
    uri = storage.uri("tokenized", key)
    found = storage.lookup("tokenized", key, STATS_FILE)
    if found is not None:
        saved = json.loads((found / STATS_FILE).read_text())
        return TokenizedData(key=key, uri=uri, skipped=True, **saved)
    staging = storage.staging_dir("tokenized")
    counts, dropped, stats = {}, Counter(), Counter()
    for name, table in (("train", split.train), ("eval", split.eval)):
        counts[name], split_dropped, split_stats = tokenize_table(table, chosen, staging / f"{name}.parquet")
        dropped.update(split_dropped)
        stats.update(split_stats)
    summary = {
        "task": task,
        "label_names": labels,
        "train_rows": counts["train"],
        "eval_rows": counts["eval"],
        "dropped": dict(dropped),
        "stats": {
            "truncated_share": stats["truncated"] / max(stats["examples"], 1),
            "end_of_turn_share": stats["with_end_of_turn"] / max(counts["train"] + counts["eval"], 1),
            "tokens": float(stats["tokens"]),
            "label_tokens": float(stats["label_tokens"]),
        },
    }
    (staging / STATS_FILE).write_text(json.dumps(summary, indent=2))
    storage.publish(staging, "tokenized", key, STATS_FILE)  # a concurrent run may have published the same content
    return TokenizedData(key=key, uri=uri, **summary)


@stage("tokenize", retries=2)
def tokenize(split: SplitResult, base: BaseModelRef, config: TokenizeConfig, run: RunContext) -> TokenizedData:
    """Tokenize both splits with the base model's tokenizer and log token statistics."""
    result = tokenize_splits(split, base, config, run_storage(run))
    RunTracker(run.mlflow_run_id).log_metrics(
        {f"data/{name}": value for name, value in result.stats.items()}
        | {f"data/dropped/{reason}": count for reason, count in result.dropped.items()}
        | {"data/train_rows": result.train_rows, "data/eval_rows": result.eval_rows}
    )
    stage_logger().info(
        "tokenized %d train / %d eval examples%s (%.0f tokens, %.1f%% truncated)",
        result.train_rows, result.eval_rows, " from cache" if result.skipped else "",
        result.stats["tokens"], 100 * result.stats["truncated_share"],
    )
    return result
