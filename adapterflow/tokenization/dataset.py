"""Tokenized splits as compact torch datasets (flat numpy arrays plus offsets, memory-mapped Parquet)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
from torch.utils.data import Dataset


class TokenDataset(Dataset):
    """Examples of `input_ids` and `labels`, sliced from one flat array each (labels have their own offsets:
    one per token for language modelling, one class index per example for classification)."""

    def __init__(self, path: str | Path) -> None:
        table = pq.read_table(path, memory_map=True)
        ids = table.column("input_ids").combine_chunks()
        labels = table.column("labels").combine_chunks()
        self.offsets = ids.offsets.to_numpy()
        self.ids = ids.values.to_numpy()
        self.labels = labels.values.to_numpy()
        self.label_offsets = labels.offsets.to_numpy()

    def __len__(self) -> int:
        return len(self.offsets) - 1

    def __getitem__(self, index: int) -> dict[str, np.ndarray]:
        start, end = self.offsets[index], self.offsets[index + 1]
        first, last = self.label_offsets[index], self.label_offsets[index + 1]
        return {"input_ids": self.ids[start:end], "labels": self.labels[first:last]}

    @property
    def lengths(self) -> np.ndarray:
        return np.diff(self.offsets)

    @property
    def total_tokens(self) -> int:
        return int(self.offsets[-1])
