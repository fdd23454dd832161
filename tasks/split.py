"""Split: a registered model's frozen eval set, or (first run, refresh, resplit) a seeded train/eval split by
prompt hash whose eval examples that repeat a training example (question and answer together) are removed,
with a warning when too few eval rows are left to decide promotion on.

With a frozen eval set every new row goes to train except copies (exact or near, whole example) of a frozen
eval row: those are counted as leakage against the frozen set and left out.
"""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import pyarrow as pa
from mlflow.tracking import MlflowClient

from adapterflow.core.errors import DataError
from adapterflow.core.hashing import KEY_LENGTH, RowHasher
from adapterflow.core.logs import stage_logger
from adapterflow.data.leakage import Leaks, answers_match, find_leaks
from adapterflow.data.minhash import mix64
from adapterflow.data.near_dedup import NearDedupSettings
from adapterflow.data.scan import read_group, scan_table
from adapterflow.data.tables import TableWriter, iter_rows
from adapterflow.evaluation.eval_sets import (
    TAG_EVAL_SET,
    TAG_EVAL_SET_CHANGED,
    champion_eval_set,
    eval_set_action,
    find_eval_set,
    freeze_eval_set,
    load_eval_set,
    record_eval_set,
    tag_registered_model,
)
from adapterflow.orchestration.stage import stage
from adapterflow.storage.records import DataTable, FilterResult, RunContext, SplitResult
from adapterflow.storage.store import Storage, run_storage
from adapterflow.tracking.run import TAG_DATASET_FINGERPRINT, RunTracker
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


def frozen_rows_in_data(matched: np.ndarray, frozen_rows: int) -> tuple[np.ndarray, int]:
    """Per input row, whether it is a frozen eval row itself (the first exact match of that row; later ones are
    copies), given each input row's exactly matching frozen row (-1: none); and how many frozen rows the input lacks."""
    first = np.zeros(len(matched), bool)
    exact_rows = np.flatnonzero(matched >= 0)
    _, firsts = np.unique(matched[exact_rows], return_index=True)
    first[exact_rows[firsts]] = True
    return first, frozen_rows - len(firsts)


class FrozenSplit(NamedTuple):
    train: DataTable
    eval: DataTable
    dropped: dict[str, int]
    examples: list[dict]
    not_in_data: int


def train_beside_frozen(
    table: DataTable, frozen: DataTable, leakage: LeakageConfig, folder: Path, workers: int
) -> FrozenSplit:
    """Eval is the frozen set; every input row goes to train except the frozen rows themselves and copies of
    them: exact ones always (a frozen row trained on is no eval row), near ones (whole example, answer repeated)
    when data.leakage is enabled. Copies are counted as leaks against the frozen set."""
    if frozen.task != table.task:
        raise DataError(f"the frozen eval set holds {frozen.task} rows but the data is now {table.task}",
                        hint="freeze an eval set of the new kind with `adapterflow eval-set refresh CONFIG`")
    settings = NearDedupSettings(leakage.threshold, leakage.shingle_size) if leakage.enabled else None
    leaks = whole_example_leaks(frozen, table, settings, leakage, folder, workers)
    leaked = leaks.exact | leaks.near
    in_eval, not_in_data = frozen_rows_in_data(np.where(leaks.exact, leaks.train_row, -1), frozen.rows)
    copies = leaks.exact & ~in_eval
    # _leak_examples names the compared table "eval" and the reference "train": here they are the other way round
    examples = [{**found, "eval": found["train"], "train": found["eval"]}
                for found in _leak_examples(frozen, table, leaks, np.flatnonzero(copies | leaks.near)[:LEAK_EXAMPLES])]
    with TableWriter(folder / "train.parquet", table.task, "zstd") as writer:
        start = 0
        for group in range(_row_groups(table.path)):
            batch = read_group(table.path, group)
            writer.write_batch(batch.filter(pa.array(~leaked[start : start + batch.num_rows])))
            start += batch.num_rows
        train = writer.close()
    shutil.copyfile(frozen.path, folder / "eval.parquet")
    held_out = frozen.model_copy(update={"path": str(folder / "eval.parquet")})
    counts = {"split.frozen_leak_exact": int(copies.sum()), "split.frozen_leak_near": int(leaks.near.sum())}
    return FrozenSplit(train, held_out, {k: v for k, v in counts.items() if v}, examples, not_in_data)


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


def split_with_eval_set(
    rows: FilterResult, config: SplitConfig, leakage: LeakageConfig, storage: Storage, workers: int,
    model_name: str, client: MlflowClient,
) -> SplitResult:
    """Split on the model's frozen eval set, freezing one first when it has none (or on refresh)."""
    found = find_eval_set(client, storage, model_name) if config.eval_set == "frozen" else None
    action = eval_set_action(config.eval_set, found)
    frozen = load_eval_set(storage, found, model_name) if action == "reuse" else None
    result = split_rows(rows, config, leakage, storage, workers, frozen)
    if action == "freeze":
        record_eval_set(client, storage, model_name, freeze_eval_set(storage, result.eval, result.eval_set))
    elif action == "reuse":
        tag_registered_model(client, model_name, found)  # a model registered after its set was frozen
    return result


def eval_set_change(champion_set: str | None, eval_set: str) -> str | None:
    """`<champion's set> -> <this run's set>` when a champion exists that was evaluated on another eval set."""
    if champion_set is None or champion_set == eval_set:
        return None
    return f"{champion_set or 'unknown'} -> {eval_set}"


@stage("split", retries=2)
def split(
    rows: FilterResult, config: SplitConfig, leakage: LeakageConfig, workers: int, run: RunContext,
    model_name: str | None = None,
) -> SplitResult:
    """Split on the registered model's frozen eval set (default: the experiment's name), remove leaked rows, and
    record the dataset fingerprint, the eval set and both splits in MLflow."""
    client = MlflowClient()
    model_name = model_name or run.experiment
    result = split_with_eval_set(rows, config, leakage, run_storage(run), workers, model_name, client)
    tracker = RunTracker(run.mlflow_run_id, client)
    change = eval_set_change(champion_eval_set(client, model_name), result.eval_set)
    tracker.set_tags({TAG_DATASET_FINGERPRINT: result.fingerprint, TAG_EVAL_SET: result.eval_set,
                      **({TAG_EVAL_SET_CHANGED: change} if change else {})})
    leaked = result.dropped.get("split.leak_exact", 0) + result.dropped.get("split.leak_near", 0)
    tracker.log_metrics({
        "data/train_split_rows": result.train.rows, "data/eval_split_rows": result.eval.rows,
        "data/leak_exact": result.dropped.get("split.leak_exact", 0),
        "data/leak_near": result.dropped.get("split.leak_near", 0),
        "data/eval_rows_before_leakage": result.eval.rows + leaked, "data/eval_rows_after_leakage": result.eval.rows,
        "data/frozen_leak_exact": result.dropped.get("split.frozen_leak_exact", 0),
        "data/frozen_leak_near": result.dropped.get("split.frozen_leak_near", 0),
    })
    # each side under its own content digest (the fingerprint covers both): runs on the same eval set show the same
    tracker.log_dataset(result.train.path, "train", "training", content_digest(result.train))
    tracker.log_dataset(result.eval.path, "eval", "evaluation", content_digest(result.eval))
    logger = stage_logger()
    logger.info(
        "split %d train / %d eval rows (%d eval rows before leakage removal; leaked: %s), dataset fingerprint %s",
        result.train.rows, result.eval.rows, result.eval.rows + leaked, result.dropped or "none", result.fingerprint[:12],
    )
    frozen_leaks = result.dropped.get("split.frozen_leak_exact", 0) + result.dropped.get("split.frozen_leak_near", 0)
    logger.info("eval set %s (data.split.eval_set: %s); %d new row(s) left train as copies of frozen eval rows",
                result.eval_set, config.eval_set, frozen_leaks)
    if change:
        logger.warning("the champion was evaluated on another eval set (%s): its comparison with this run is made "
                       "on the new set, not on the numbers it was promoted with", change)
    if result.eval_warning:
        logger.warning(result.eval_warning)
    return result
