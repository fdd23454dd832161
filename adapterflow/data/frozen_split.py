"""Training rows beside a frozen eval set: every new row goes to train except the frozen rows themselves and
copies of them (exact or near, whole example), which are counted as leakage against the frozen set."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import NamedTuple

import numpy as np
import pyarrow as pa

from adapterflow.core.errors import DataError
from adapterflow.data.leak_removal import LEAK_EXAMPLES, leak_examples, whole_example_leaks
from adapterflow.data.near_dedup import NearDedupSettings
from adapterflow.data.scan import read_group
from adapterflow.data.tables import TableWriter, open_parquet
from adapterflow.storage.records import DataTable
from schemas.data import LeakageConfig


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
    # leak_examples names the compared table "eval" and the reference "train": here they are the other way round
    examples = [{**found, "eval": found["train"], "train": found["eval"]}
                for found in leak_examples(frozen, table, leaks, np.flatnonzero(copies | leaks.near)[:LEAK_EXAMPLES])]
    with TableWriter(folder / "train.parquet", table.task, "zstd") as writer:
        start = 0
        for group in range(open_parquet(table.path).metadata.num_row_groups):
            batch = read_group(table.path, group)
            writer.write_batch(batch.filter(pa.array(~leaked[start : start + batch.num_rows])))
            start += batch.num_rows
        train = writer.close()
    shutil.copyfile(frozen.path, folder / "eval.parquet")
    held_out = frozen.model_copy(update={"path": str(folder / "eval.parquet")})
    counts = {"split.frozen_leak_exact": int(copies.sum()), "split.frozen_leak_near": int(leaks.near.sum())}
    return FrozenSplit(train, held_out, {k: v for k, v in counts.items() if v}, examples, not_in_data)
