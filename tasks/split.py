"""Split: a seeded train/eval split by prompt hash (a row keeps its side across retrains), then eval examples
that repeat a training example (question and answer together) are removed, and a warning says when too few
eval rows are left to decide promotion on."""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from adapterflow.data.leakage import answers_match, find_leaks
from adapterflow.data.minhash import mix64
from adapterflow.data.near_dedup import NearDedupSettings
from adapterflow.data.scan import read_group, scan_table
from adapterflow.data.tables import TableWriter, iter_rows
from adapterflow.errors import DataError
from adapterflow.hashing import KEY_LENGTH, RowHasher
from adapterflow.records import DataTable, FilterResult, RunContext, SplitResult
from adapterflow.stage import stage, stage_logger
from adapterflow.storage import Storage, run_storage
from adapterflow.tracking import TAG_DATASET_FINGERPRINT, RunTracker
from schemas.data import LeakageConfig, SplitConfig

HASH_SCALE = float(1 << 64)
LEAK_EXAMPLES = 10
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


def content(row: dict[str, Any]) -> dict[str, Any]:
    """A row without provenance: moving a file must not change the dataset fingerprint."""
    return {key: value for key, value in row.items() if key not in ("source", "line")}


def write_sides(table: DataTable, to_eval: np.ndarray, folder: Path) -> tuple[DataTable, DataTable]:
    """Stream the table into train and eval files by the per-row mask."""
    with (TableWriter(folder / "train.parquet", table.task, "zstd") as train,
          TableWriter(folder / "eval.parquet", table.task, "zstd") as held_out):
        start = 0
        for batch in (read_group(table.path, group) for group in range(_row_groups(table.path))):
            mask = to_eval[start : start + batch.num_rows]
            held_out.write_batch(batch.filter(pa.array(mask)))
            train.write_batch(batch.filter(pa.array(~mask)))
            start += batch.num_rows
        return train.close(), held_out.close()


def _row_groups(path: str) -> int:
    from adapterflow.data.tables import open_parquet

    return open_parquet(path).metadata.num_row_groups


def remove_leaks(
    train: DataTable, held_out: DataTable, config: LeakageConfig, folder: Path, workers: int
) -> tuple[DataTable, dict[str, int], list[dict]]:
    """Drop eval rows whose whole example is an exact or near duplicate of a training example; a near
    duplicate must repeat that example's answer too (raw text has no separate answer)."""
    settings = NearDedupSettings(config.threshold, config.shingle_size)
    train_scan = scan_table(Path(train.path), settings, folder, workers, view="document")
    eval_scan = scan_table(Path(held_out.path), settings, folder, workers, view="document")
    confirm = None if held_out.task == "pretrain" else answers_match(
        train.path, held_out.path, config.shingle_size, config.threshold)
    try:
        leaks = find_leaks(train_scan, eval_scan, config.threshold, confirm)
    finally:
        train_scan.remove_spills()
        eval_scan.remove_spills()
    leaked = leaks.exact | leaks.near
    examples = _leak_examples(train, held_out, leaks, np.flatnonzero(leaked)[:LEAK_EXAMPLES])
    kept_path = folder / "eval-kept.parquet"
    with TableWriter(kept_path, held_out.task, "zstd") as writer:
        start = 0
        for group in range(_row_groups(held_out.path)):
            batch = read_group(held_out.path, group)
            writer.write_batch(batch.filter(pa.array(~leaked[start : start + batch.num_rows])))
            start += batch.num_rows
        kept = writer.close()
    kept_path.replace(held_out.path)
    counts = {"split.leak_exact": int(leaks.exact.sum()), "split.leak_near": int(leaks.near.sum())}
    return kept.model_copy(update={"path": held_out.path}), {k: v for k, v in counts.items() if v}, examples


def _leak_examples(train: DataTable, held_out: DataTable, leaks, rows: np.ndarray) -> list[dict]:
    if len(rows) == 0:
        return []
    import pyarrow.parquet as pq

    eval_where = pq.read_table(held_out.path, columns=["source", "line"]).take(rows).to_pylist()
    train_where = pq.read_table(train.path, columns=["source", "line"]).take(leaks.train_row[rows]).to_pylist()
    return [
        {"eval": f"{e['source']}:{e['line']}", "train": f"{t['source']}:{t['line']}",
         "kind": "exact" if leaks.exact[row] else "near", "jaccard": round(float(leaks.similarity[row]), 3)}
        for row, e, t in zip(rows.tolist(), eval_where, train_where, strict=True)
    ]


def eval_size_warning(before: int, after: int, dropped: dict[str, int], examples: list[dict], config: SplitConfig) -> str | None:
    """Why the eval set left after leakage removal is too small to decide promotion on, or None.

    Too small: fewer rows than data.split.min_eval_rows, or, when the split held out fewer than that (a small
    dataset), fewer than it held out. Without leaks nothing is removed, so this never fires.
    """
    floor = min(config.min_eval_rows, before)
    if after >= floor:
        return None
    if floor == config.min_eval_rows:
        limit = f"fewer than data.split.min_eval_rows ({config.min_eval_rows})"
    else:
        limit = f"fewer than the {before} the split held out (data.split.min_eval_rows is {config.min_eval_rows})"
    seen = "; ".join(f"eval {leak['eval']} repeats train {leak['train']}" for leak in examples[:3])
    cap = f" or data.split.max_eval_rows (now {config.max_eval_rows})" if config.max_eval_rows is not None else ""
    return (
        f"only {after} of {before} eval rows are left after removing {dropped.get('split.leak_exact', 0)} exact and "
        f"{dropped.get('split.leak_near', 0)} near duplicates of training examples, {limit}: promotion will be decided "
        f"on {after} rows" + (f" (e.g. {seen})" if seen else "")
        + f". Hold out more with data.split.eval_size (now {config.eval_size:g}){cap}, or add data"
    )


def fingerprint(train: DataTable, held_out: DataTable) -> str:
    """sha256 over the canonical content of both sides, in order (provenance excluded)."""
    sides = []
    for table in (train, held_out):
        hasher = RowHasher()
        for row in iter_rows(table):
            hasher.update(content(row))
        sides.append(hasher.hexdigest())
    return hashlib.sha256(":".join(sides).encode()).hexdigest()


def split_rows(
    rows: FilterResult, config: SplitConfig, leakage: LeakageConfig, storage: Storage, workers: int
) -> SplitResult:
    """Write train and eval tables into the store's datasets/<fingerprint>/."""
    staging = storage.staging_dir("split")
    try:
        keys = scan_table(Path(rows.table.path), None, staging, workers, view="prompt").exact_keys
        if len(keys) < 2:
            raise DataError(
                f"{len(keys)} row(s) are left after clean, PII and dedup drops (limit: at least 2, one for train and "
                f"one for eval)", hint="add data, or loosen what dropped the rows (data.clean, data.pii.action, "
                "data.dedup): the clean, redact and dedup log lines count the drops by reason")
        positions = split_positions(keys, config.seed)
        train, held_out = write_sides(rows.table, positions < eval_threshold(positions, config), staging)
        dropped, examples, before = {}, [], held_out.rows
        if leakage.enabled:
            held_out, dropped, examples = remove_leaks(train, held_out, leakage, staging, workers)
        warning = eval_size_warning(before, held_out.rows, dropped, examples, config)
        digest = fingerprint(train, held_out)
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
    )


@stage("split", retries=2)
def split(rows: FilterResult, config: SplitConfig, leakage: LeakageConfig, workers: int, run: RunContext) -> SplitResult:
    """Split, remove leaked eval rows, and record the dataset fingerprint and both splits in MLflow."""
    result = split_rows(rows, config, leakage, run_storage(run), workers)
    tracker = RunTracker(run.mlflow_run_id)
    tracker.set_tags({TAG_DATASET_FINGERPRINT: result.fingerprint})
    leaked = result.dropped.get("split.leak_exact", 0) + result.dropped.get("split.leak_near", 0)
    tracker.log_metrics({
        "data/train_split_rows": result.train.rows, "data/eval_split_rows": result.eval.rows,
        "data/leak_exact": result.dropped.get("split.leak_exact", 0),
        "data/leak_near": result.dropped.get("split.leak_near", 0),
        "data/eval_rows_before_leakage": result.eval.rows + leaked, "data/eval_rows_after_leakage": result.eval.rows,
    })
    tracker.log_dataset(result.train.path, "train", "training", result.fingerprint)
    tracker.log_dataset(result.eval.path, "eval", "evaluation", result.fingerprint)
    logger = stage_logger()
    logger.info(
        "split %d train / %d eval rows (%d eval rows before leakage removal; leaked: %s), dataset fingerprint %s",
        result.train.rows, result.eval.rows, result.eval.rows + leaked, result.dropped or "none", result.fingerprint[:12],
    )
    if result.eval_warning:
        logger.warning(result.eval_warning)
    return result
