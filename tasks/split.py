"""Split: a seeded train/eval split by content hash, so a row keeps its side across retrains."""

from __future__ import annotations

import hashlib
import shutil
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from adapterflow.data.tables import TableWriter, iter_rows, prompt_and_response
from adapterflow.errors import DataError
from adapterflow.hashing import KEY_LENGTH, RowHasher
from adapterflow.home import Home
from adapterflow.records import FilterResult, RunContext, SplitResult
from adapterflow.stage import stage, stage_logger
from adapterflow.tracking import TAG_DATASET_FINGERPRINT, RunTracker
from tasks.dedup import fold
from schemas.data import SplitConfig

HASH_SCALE = float(1 << 64)


def split_position(row: dict[str, Any], seed: int) -> float:
    """A uniform number in [0, 1) from the row's prompt: rows sharing a prompt land on the same side."""
    prompt, response = prompt_and_response(row)
    text = fold(prompt) if prompt else fold(response)
    digest = hashlib.blake2b(f"{seed}\x00{text}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / HASH_SCALE


def eval_threshold(positions: np.ndarray, config: SplitConfig) -> float:
    """Rows whose position is below this go to eval."""
    if len(positions) == 0:
        return 0.0
    wanted = int(config.eval_size) if config.eval_size >= 1 else int(np.ceil(config.eval_size * len(positions)))
    if config.max_eval_rows is not None:
        wanted = min(wanted, config.max_eval_rows)
    wanted = min(max(wanted, 1), len(positions) - 1)
    if wanted <= 0:
        return 0.0
    return float(np.nextafter(np.partition(positions, wanted - 1)[wanted - 1], 1.0))


def content(row: dict[str, Any]) -> dict[str, Any]:
    """A row without provenance: moving a file must not change the dataset fingerprint."""
    return {key: value for key, value in row.items() if key not in ("source", "line")}


def split_rows(rows: FilterResult, config: SplitConfig, home: Home) -> SplitResult:
    """Write train and eval tables under cache/datasets/<fingerprint>/."""
    positions = np.fromiter((split_position(row, config.seed) for row in iter_rows(rows.table)), dtype=np.float64)
    if len(positions) < 2:
        raise DataError(f"{len(positions)} row(s) left after cleaning: a train/eval split needs at least 2",
                        hint="add data, or check the drop counts of clean and dedup")
    threshold = eval_threshold(positions, config)
    staging = Path(tempfile.mkdtemp(prefix="split-", dir=home.cache))
    hashers = {"train": RowHasher(), "eval": RowHasher()}
    task = rows.table.task
    with TableWriter(staging / "train.parquet", task) as train, TableWriter(staging / "eval.parquet", task) as held_out:
        for position, row in zip(positions, iter_rows(rows.table), strict=True):
            side = "eval" if position < threshold else "train"
            (held_out if side == "eval" else train).write(row)
            hashers[side].update(content(row))
        train_table, eval_table = train.close(), held_out.close()
    fingerprint = hashlib.sha256(f"{hashers['train'].hexdigest()}:{hashers['eval'].hexdigest()}".encode()).hexdigest()
    target = home.cache_dir("datasets", fingerprint[:KEY_LENGTH])
    skipped = target.exists()
    if skipped:
        shutil.rmtree(staging)
    else:
        target.parent.mkdir(parents=True, exist_ok=True)
        staging.replace(target)
    return SplitResult(
        train=train_table.model_copy(update={"path": str(target / "train.parquet")}),
        eval=eval_table.model_copy(update={"path": str(target / "eval.parquet")}),
        fingerprint=fingerprint,
        skipped=skipped,
    )


@stage("split", retries=2)
def split(rows: FilterResult, config: SplitConfig, run: RunContext) -> SplitResult:
    """Split the validated rows and record the dataset fingerprint and both splits in MLflow."""
    home = Home(Path(run.home))
    home.cache.mkdir(parents=True, exist_ok=True)
    result = split_rows(rows, config, home)
    tracker = RunTracker(run.mlflow_run_id)
    tracker.set_tags({TAG_DATASET_FINGERPRINT: result.fingerprint})
    tracker.log_metrics({"data/train_split_rows": result.train.rows, "data/eval_split_rows": result.eval.rows})
    tracker.log_dataset(result.train.path, "train", "training", result.fingerprint)
    tracker.log_dataset(result.eval.path, "eval", "evaluation", result.fingerprint)
    stage_logger().info(
        "split %d train / %d eval rows, dataset fingerprint %s", result.train.rows, result.eval.rows, result.fingerprint[:12]
    )
    return result
