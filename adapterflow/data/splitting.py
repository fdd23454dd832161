"""The train/eval split, stored under its fingerprint: rows go to eval by a seeded hash of their prompt (rows
sharing a prompt share a side) and eval rows that repeat a training example are removed; or, given a frozen eval
set, every other row goes to train. Then the validation split is carved from train (data/validation_split.py)."""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path
from typing import Any

import numpy as np

from adapterflow.core.errors import DataError
from adapterflow.core.hashing import KEY_LENGTH, RowHasher
from adapterflow.data.frozen_split import train_beside_frozen
from adapterflow.data.leak_removal import eval_size_warning, remove_leaks
from adapterflow.data.scan import scan_table
from adapterflow.data.sides import split_positions, write_sides
from adapterflow.data.tables import iter_rows
from adapterflow.data.validation_split import carve_validation
from adapterflow.storage.records import DataTable, FilterResult, SplitResult
from adapterflow.storage.store import Storage
from schemas.data import LeakageConfig, SplitConfig

FINGERPRINT_FILE = "fingerprint.txt"  # written last: its presence marks a complete dataset folder


def eval_threshold(positions: np.ndarray, config: SplitConfig) -> float:
    """Rows whose position is below this go to eval."""
    wanted = int(config.eval_size) if config.eval_size >= 1 else int(np.ceil(config.eval_size * len(positions)))
    if config.max_eval_rows is not None:
        wanted = min(wanted, config.max_eval_rows)
    wanted = min(max(wanted, 1), len(positions) - 1)
    return float(np.nextafter(np.partition(positions, wanted - 1)[wanted - 1], 1.0))


def content(row: dict[str, Any]) -> dict[str, Any]:
    """A row without provenance: moving a file must not change the dataset fingerprint."""
    return {key: value for key, value in row.items() if key not in ("source", "line")}


def content_digest(table: DataTable) -> str:
    """sha256 over a table's canonical rows, in order (provenance excluded)."""
    hasher = RowHasher()
    for row in iter_rows(table):
        hasher.update(content(row))
    return hasher.hexdigest()


def fingerprint(train: DataTable, held_out: DataTable, validation: DataTable | None = None) -> str:
    """sha256 over the canonical content of every side, in order (provenance excluded)."""
    digests = [content_digest(table) for table in (train, held_out, validation) if table is not None]
    return hashlib.sha256(":".join(digests).encode()).hexdigest()


def eval_set_id(held_out: DataTable) -> str:
    """An eval set's id: the hash of its rows' content."""
    return content_digest(held_out)[:KEY_LENGTH]


def split_rows(
    rows: FilterResult, config: SplitConfig, leakage: LeakageConfig, storage: Storage, workers: int,
    frozen: DataTable | None = None,
) -> SplitResult:
    """Write train and eval tables into the store's datasets/<fingerprint>/: eval is the `frozen` eval set when
    one is given, else the seeded split's eval side."""
    with storage.staging("split") as staging:
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
        carved = carve_validation(train, config, leakage, staging, workers)
        train, validation, dropped = carved.train, carved.validation, dropped | carved.dropped
        digest = fingerprint(train, held_out, validation)
        eval_set = eval_set_id(held_out)
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
        validation=validation.model_copy(update={"path": str(target / "validation.parquet")}) if validation else None,
        validation_note=carved.note,
        fingerprint=digest, dropped=dropped, leak_examples=examples, eval_warning=warning, skipped=skipped,
        eval_set=eval_set, eval_rows_not_in_data=not_in_data,
    )
