"""The train/eval split, stored under its fingerprint: rows go to eval by a seeded hash of their prompt (rows
sharing a prompt share a side) and eval rows that repeat a training example are removed; or, given a frozen eval
set, every other row goes to train."""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from adapterflow.core.errors import DataError
from adapterflow.core.hashing import KEY_LENGTH, RowHasher
from adapterflow.data.frozen_split import train_beside_frozen
from adapterflow.data.leak_removal import eval_size_warning, remove_leaks
from adapterflow.data.minhash import mix64
from adapterflow.data.scan import read_group, scan_table
from adapterflow.data.tables import TableWriter, iter_rows, open_parquet
from adapterflow.storage.records import DataTable, FilterResult, SplitResult
from adapterflow.storage.store import Storage
from schemas.data import LeakageConfig, SplitConfig

HASH_SCALE = float(1 << 64)
FINGERPRINT_FILE = "fingerprint.txt"  # written last: its presence marks a complete dataset folder


def split_positions(prompt_keys: np.ndarray, seed: int) -> np.ndarray:
    """A uniform number in [0, 1) per row from its folded prompt: rows sharing a prompt share a side."""
    salt = np.uint64((seed * 0x9E3779B97F4A7C15 + 1) % (1 << 64))
    return mix64(prompt_keys[:, 0] ^ salt).astype(np.float64) / HASH_SCALE


def eval_threshold(positions: np.ndarray, config: SplitConfig) -> float:
    """Rows whose position is below this go to eval."""
    wanted = int(config.eval_size) if config.eval_size >= 1 else int(np.ceil(config.eval_size * len(positions)))
    if config.max_eval_rows is not None:
        wanted = min(wanted, config.max_eval_rows)
    wanted = min(max(wanted, 1), len(positions) - 1)
    return float(np.nextafter(np.partition(positions, wanted - 1)[wanted - 1], 1.0))


def write_sides(table: DataTable, to_eval: np.ndarray, folder: Path) -> tuple[DataTable, DataTable]:
    """Stream the table into train and eval files by the per-row mask."""
    with (TableWriter(folder / "train.parquet", table.task, "zstd") as train,
          TableWriter(folder / "eval.parquet", table.task, "zstd") as held_out):
        start, groups = 0, open_parquet(table.path).metadata.num_row_groups
        for batch in (read_group(table.path, group) for group in range(groups)):
            mask = to_eval[start : start + batch.num_rows]
            held_out.write_batch(batch.filter(pa.array(mask)))
            train.write_batch(batch.filter(pa.array(~mask)))
            start += batch.num_rows
        return train.close(), held_out.close()


def content(row: dict[str, Any]) -> dict[str, Any]:
    """A row without provenance: moving a file must not change the dataset fingerprint."""
    return {key: value for key, value in row.items() if key not in ("source", "line")}


def content_digest(table: DataTable) -> str:
    """sha256 over a table's canonical rows, in order (provenance excluded)."""
    hasher = RowHasher()
    for row in iter_rows(table):
        hasher.update(content(row))
    return hasher.hexdigest()


def fingerprint(train: DataTable, held_out: DataTable) -> str:
    """sha256 over the canonical content of both sides, in order (provenance excluded)."""
    return hashlib.sha256(f"{content_digest(train)}:{content_digest(held_out)}".encode()).hexdigest()


def eval_set_id(held_out: DataTable) -> str:
    """An eval set's id: the hash of its rows' content."""
    return content_digest(held_out)[:KEY_LENGTH]


def split_rows(
    rows: FilterResult, config: SplitConfig, leakage: LeakageConfig, storage: Storage, workers: int,
    frozen: DataTable | None = None,
) -> SplitResult:
    """Write train and eval tables into the store's datasets/<fingerprint>/: eval is the `frozen` eval set when
    one is given, else the seeded split's eval side."""
    staging = storage.staging_dir("split")
    try:
        keys = scan_table(Path(rows.table.path), None, staging, workers, view="prompt").exact_keys
        needed = 1 if frozen else 2  # a frozen eval set needs rows for train only
        if len(keys) < needed:
            raise DataError(
                f"{len(keys)} row(s) are left after clean, PII and dedup drops (limit: at least {needed}: "
                + ("one for train)" if frozen else "one for train and one for eval)"), hint="add data, or loosen what dropped the rows (data.clean, data.pii.action, "
                "data.dedup): the clean, redact and dedup log lines count the drops by reason")
        not_in_data = 0
        if frozen is not None:
            train, held_out, dropped, examples, not_in_data = train_beside_frozen(
                rows.table, frozen, leakage, staging, workers)
            warning = None
        else:
            positions = split_positions(keys, config.seed)
            train, held_out = write_sides(rows.table, positions < eval_threshold(positions, config), staging)
            dropped, examples, before = {}, [], held_out.rows
            if leakage.enabled:
                held_out, dropped, examples = remove_leaks(train, held_out, leakage, staging, workers)
            warning = eval_size_warning(before, held_out.rows, dropped, examples, config)
        digest = fingerprint(train, held_out)
        eval_set = eval_set_id(held_out)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    key = digest[:KEY_LENGTH]
    found = storage.lookup("datasets", key, FINGERPRINT_FILE)
    skipped = found is not None
    if skipped:  # the store has these splits already: no second upload
        shutil.rmtree(staging)
        target = found
    else:
        (staging / FINGERPRINT_FILE).write_text(digest)
        target = storage.publish(staging, "datasets", key, FINGERPRINT_FILE)
    return SplitResult(
        uri=storage.uri("datasets", key),
        train=train.model_copy(update={"path": str(target / "train.parquet")}),
        eval=held_out.model_copy(update={"path": str(target / "eval.parquet")}),
        fingerprint=digest, dropped=dropped, leak_examples=examples, eval_warning=warning, skipped=skipped,
        eval_set=eval_set, eval_rows_not_in_data=not_in_data,
    )
