"""Which side of a split a row goes to, by a seeded hash of its prompt, and writing the sides."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa

from adapterflow.data.minhash import mix64
from adapterflow.data.scan import read_group
from adapterflow.data.tables import TableWriter, open_parquet
from adapterflow.storage.records import DataTable

HASH_SCALE = float(1 << 64)


def split_positions(prompt_keys: np.ndarray, seed: int) -> np.ndarray:
    """A uniform number in [0, 1) per row from its folded prompt: rows sharing a prompt share a side."""
    salt = np.uint64((seed * 0x9E3779B97F4A7C15 + 1) % (1 << 64))
    return mix64(prompt_keys[:, 0] ^ salt).astype(np.float64) / HASH_SCALE


def write_sides(
    table: DataTable, to_held_out: np.ndarray, folder: Path, names: tuple[str, str] = ("train", "eval")
) -> tuple[DataTable, DataTable]:
    """Stream the table into `folder`/<name>.parquet for each side, by the per-row mask (True: the second side)."""
    with (TableWriter(folder / f"{names[0]}.parquet", table.task, "zstd") as train,
          TableWriter(folder / f"{names[1]}.parquet", table.task, "zstd") as held_out):
        start, groups = 0, open_parquet(table.path).metadata.num_row_groups
        for batch in (read_group(table.path, group) for group in range(groups)):
            mask = to_held_out[start : start + batch.num_rows]
            held_out.write_batch(batch.filter(pa.array(mask)))
            train.write_batch(batch.filter(pa.array(~mask)))
            start += batch.num_rows
        return train.close(), held_out.close()
