"""Eval rows that repeat a training example: found across two tables, removed from eval, shown by example, and
warned about when too few eval rows are left to decide promotion on."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from adapterflow.data.leakage import Leaks, answers_match, find_leaks
from adapterflow.data.near_dedup import NearDedupSettings
from adapterflow.data.scan import read_group, scan_table
from adapterflow.data.tables import TableWriter, open_parquet
from adapterflow.storage.records import DataTable
from schemas.data import LeakageConfig, SplitConfig

LEAK_EXAMPLES = 10


def whole_example_leaks(
    reference: DataTable, compared: DataTable, settings: NearDedupSettings | None, config: LeakageConfig,
    folder: Path, workers: int,
) -> Leaks:
    """The rows of `compared` whose whole example is an exact copy of a `reference` row, or (with `settings`) a
    near copy that repeats its answer too (raw text has no separate answer)."""
    reference_scan = scan_table(Path(reference.path), settings, folder, workers, view="document")
    compared_scan = scan_table(Path(compared.path), settings, folder, workers, view="document")
    confirm = None if compared.task == "pretrain" or settings is None else answers_match(
        reference.path, compared.path, config.shingle_size, config.threshold)
    try:
        return find_leaks(reference_scan, compared_scan, config.threshold, confirm)
    finally:
        reference_scan.remove_spills()
        compared_scan.remove_spills()


def remove_leaks(
    train: DataTable, held_out: DataTable, config: LeakageConfig, folder: Path, workers: int
) -> tuple[DataTable, dict[str, int], list[dict]]:
    """Drop eval rows whose whole example is an exact or near duplicate of a training example; a near
    duplicate must repeat that example's answer too (raw text has no separate answer)."""
    settings = NearDedupSettings(config.threshold, config.shingle_size)
    leaks = whole_example_leaks(train, held_out, settings, config, folder, workers)
    leaked = leaks.exact | leaks.near
    examples = leak_examples(train, held_out, leaks, np.flatnonzero(leaked)[:LEAK_EXAMPLES])
    kept_path = folder / "eval-kept.parquet"
    with TableWriter(kept_path, held_out.task, "zstd") as writer:
        start = 0
        for group in range(open_parquet(held_out.path).metadata.num_row_groups):
            batch = read_group(held_out.path, group)
            writer.write_batch(batch.filter(pa.array(~leaked[start : start + batch.num_rows])))
            start += batch.num_rows
        kept = writer.close()
    kept_path.replace(held_out.path)
    counts = {"split.leak_exact": int(leaks.exact.sum()), "split.leak_near": int(leaks.near.sum())}
    return kept.model_copy(update={"path": held_out.path}), {k: v for k, v in counts.items() if v}, examples


def leak_examples(train: DataTable, held_out: DataTable, leaks: Leaks, rows: np.ndarray) -> list[dict]:
    """Where the given leaked eval rows and the training rows they repeat come from, and how alike they are."""
    if len(rows) == 0:
        return []
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
