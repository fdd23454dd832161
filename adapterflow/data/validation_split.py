"""The validation split, carved from the training side: what everything that selects while training reads
(early stopping, the best step, a sweep's trials and their pruning), so that the eval set that gates promotion
is touched by evaluate alone.

Rows go to validation by the same seeded hash of their prompt as the train/eval split (rows sharing a prompt
share a side): the training rows whose hash is highest, so a row keeps its side while the data grows. Validation
rows that repeat a training example (exact, or near with data.leakage enabled) are removed, as for eval.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from adapterflow.data.leak_removal import remove_leaks
from adapterflow.data.scan import scan_table
from adapterflow.data.sides import split_positions, write_sides
from adapterflow.storage.records import DataTable
from schemas.data import LeakageConfig, SplitConfig

VALIDATION_LEAK_KINDS = {"split.leak_exact": "split.validation_leak_exact",
                         "split.leak_near": "split.validation_leak_near"}


@dataclass(frozen=True)
class ValidationCarve:
    """The training rows left, the validation rows (None: the data is too small for them) and why not."""

    train: DataTable
    validation: DataTable | None
    dropped: dict[str, int] = field(default_factory=dict)
    note: str | None = None


def validation_rows_wanted(train_rows: int, config: SplitConfig) -> int:
    """How many training rows data.split.validation_size asks for, within max_validation_rows."""
    size = config.validation_size
    wanted = int(size) if size >= 1 else math.ceil(size * train_rows)
    return min(wanted, config.max_validation_rows) if config.max_validation_rows is not None else wanted


def too_small_note(train_rows: int, wanted: int, config: SplitConfig) -> str | None:
    """Why there is no validation split, or None when there is one: fewer wanted rows than min_validation_rows, or
    not at least as many training rows left as validation takes."""
    if config.validation_size == 0:
        return "data.split.validation_size is 0"
    if wanted < config.min_validation_rows:
        return (f"{train_rows} training rows give {wanted} validation row(s) at data.split.validation_size "
                f"{config.validation_size:g}, fewer than data.split.min_validation_rows ({config.min_validation_rows})")
    if train_rows - wanted < wanted:
        return f"{train_rows} training rows are too few to give {wanted} of them to validation"
    return None


def carve_validation(
    train: DataTable, config: SplitConfig, leakage: LeakageConfig, folder: Path, workers: int
) -> ValidationCarve:
    """Split `train` (a file in `folder`) into train.parquet and validation.parquet in `folder`."""
    wanted = validation_rows_wanted(train.rows, config)
    note = too_small_note(train.rows, wanted, config)
    if note is not None:
        return ValidationCarve(train, None, note=note + ": no validation split, so no validation curve to stop early on")
    keys = scan_table(Path(train.path), None, folder, workers, view="prompt").exact_keys
    positions = split_positions(keys, config.seed)
    threshold = np.partition(positions, len(positions) - wanted)[len(positions) - wanted]
    source = Path(train.path).rename(folder / "train-before-validation.parquet")
    kept, validation = write_sides(train.model_copy(update={"path": str(source)}), positions >= threshold, folder,
                                   names=("train", "validation"))
    source.unlink()
    dropped: dict[str, int] = {}
    if leakage.enabled:
        validation, leaks, _ = remove_leaks(kept, validation, leakage, folder, workers)
        dropped = {VALIDATION_LEAK_KINDS[kind]: count for kind, count in leaks.items()}
    return ValidationCarve(kept, validation, dropped)
