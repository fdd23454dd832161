"""One pass over a canonical table computing what deduplication needs, row group by row group.

For every row: an exact-duplicate key (folded prompt and response) and LSH bucket keys of its MinHash
signature; the shingle hashes go to a spill file per row group, so memory holds only the keys. Row groups
are independent and the work is in Arrow and numpy kernels that release the GIL, so several threads scan
in parallel (2 threads: 2x on a 2-core machine; worker processes gained only 1.3x after start-up costs).
"""

from __future__ import annotations

import os
import tempfile
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from adapterflow.data.minhash import band_keys, shingle_hashes, signatures, text_keys, word_hashes
from adapterflow.data.near_dedup import NearDedupSettings
from adapterflow.data.tables import open_parquet
from adapterflow.data.text import comparison_parts


@dataclass
class GroupScan:
    """Keys of one row group, and where its shingles were spilled."""

    exact_keys: np.ndarray
    band_keys: np.ndarray | None
    has_shingles: np.ndarray | None
    spill_path: str | None
    shingle_offsets: np.ndarray | None


PART_SEPARATOR = " \ue000 "  # a private-use character as a word of its own: ("a b", "c") != ("a", "b c")


def read_group(path: str, group: int) -> pa.RecordBatch:
    table = open_parquet(path).read_row_group(group).combine_chunks()
    batches = table.to_batches()
    return batches[0] if batches else pa.RecordBatch.from_pylist([], schema=table.schema)


def scan_group(path: str, group: int, settings: NearDedupSettings | None, spill_dir: str, view: str) -> GroupScan:
    """Scan one row group of a canonical Parquet table."""
    parts = comparison_parts(read_group(path, group), view)
    # An empty part (raw text has no prompt) adds nothing to compare, and joining would copy every text.
    parts = [part for part in parts if pc.max(pc.utf8_length(part)).as_py()] or parts[:1]
    joined = parts[0] if len(parts) == 1 else pc.binary_join_element_wise(*parts, PART_SEPARATOR)
    words = word_hashes(pc.utf8_lower(joined))  # lower-cased words: keys ignore case and whitespace
    keys = text_keys(*words)
    if settings is None:
        return GroupScan(keys, None, None, None, None)
    shingles, offsets = shingle_hashes(words, settings.shingle_size)
    sig = signatures(shingles, offsets, settings.num_perm, settings.seed)
    with tempfile.NamedTemporaryFile(dir=spill_dir, prefix=f"shingles-{group}-", suffix=".u64", delete=False) as spill:
        spill.write(shingles.tobytes())
    return GroupScan(keys, band_keys(sig, settings.lsh), np.diff(offsets) > 0, spill.name, offsets)


@dataclass
class TableScan:
    """Keys for every row of the table, in row order, and read access to spilled shingles."""

    exact_keys: np.ndarray
    band_keys: np.ndarray | None
    has_shingles: np.ndarray | None
    groups: list[GroupScan]
    row_starts: np.ndarray

    def __post_init__(self) -> None:
        self._files: list[int] | None = None

    def _open(self) -> None:
        # Per-row (group, start, end), so that a lookup is three array reads and one pread; pread rather
        # than a memory map, so the pages read don't stay in this process's resident memory.
        self._files = [os.open(g.spill_path, os.O_RDONLY) for g in self.groups]
        sizes = np.diff(self.row_starts)
        self._row_group = np.repeat(np.arange(len(self.groups), dtype=np.int32), sizes)
        self._row_start = np.concatenate([g.shingle_offsets[:-1] for g in self.groups]) * 8
        self._row_bytes = np.concatenate([np.diff(g.shingle_offsets) for g in self.groups]) * 8

    def shingles(self, row: int) -> np.ndarray:
        """The spilled shingle hashes of one row, read on demand."""
        if self._files is None:
            self._open()
        data = os.pread(self._files[self._row_group[row]], int(self._row_bytes[row]), int(self._row_start[row]))
        return np.frombuffer(data, np.uint64)

    def remove_spills(self) -> None:
        for handle in self._files or []:
            os.close(handle)
        self._files = None
        for scan in self.groups:
            if scan.spill_path:
                Path(scan.spill_path).unlink(missing_ok=True)


def scan_table(
    path: Path, settings: NearDedupSettings | None, spill_dir: Path, workers: int, view: str = "document"
) -> TableScan:
    """Scan every row group, `workers` at a time.

    `view` is what rows are compared by: "document", prompt and response (duplicates, and leakage: the
    whole example), or "prompt", the question only (which side of the split a row goes to).
    """
    metadata = open_parquet(path).metadata
    sizes = [metadata.row_group(i).num_rows for i in range(metadata.num_row_groups)]
    jobs = [(str(path), group, settings, str(spill_dir), view) for group in range(len(sizes))]
    if workers > 1 and len(sizes) > 1:
        with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="scan") as pool:
            groups = list(pool.map(scan_group, *zip(*jobs, strict=True)))
    else:
        groups = [scan_group(*job) for job in jobs]
    empty_keys = np.zeros((0, 2), np.uint64)
    near = settings is not None
    return TableScan(
        exact_keys=np.concatenate([g.exact_keys for g in groups]) if groups else empty_keys,
        band_keys=np.concatenate([g.band_keys for g in groups]) if near and groups else None,
        has_shingles=np.concatenate([g.has_shingles for g in groups]) if near and groups else None,
        groups=groups,
        row_starts=np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64),
    )
