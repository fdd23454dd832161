"""Tokenized splits as compact torch datasets (flat numpy arrays plus offsets, memory-mapped Parquet), and the
length-grouped order training reads unpacked examples in."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
from torch.utils.data import Dataset

LENGTH_GROUP_MAX = 256  # examples sorted together at most: a multiple of every power-of-two micro-batch up to it


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


def length_grouped_order(lengths: np.ndarray, seed: int, epoch: int) -> np.ndarray:
    """An epoch's order of the examples: shuffled by (seed, epoch), then sorted longest first within groups of a
    fixed size, so that consecutive examples have similar lengths (little padding); the group holding the longest
    example goes first, so that running out of memory shows at the first step.

    Nothing else decides it (not the micro-batch size, not the global RNG, which dropout moves on): a training
    that halves its micro-batch and resumes from a checkpoint skips exactly the examples the checkpoint trained on.
    """
    count = len(lengths)
    # a power of two, and at least four groups of a small dataset so that its epochs are shuffled too
    group = min(LENGTH_GROUP_MAX, 1 << (max(count // 4, 1).bit_length() - 1))
    shuffled = np.random.default_rng([seed % 2**64, epoch]).permutation(count)  # SeedSequence takes no negatives
    groups = [chunk[np.argsort(-lengths[chunk], kind="stable")]
              for chunk in np.split(shuffled, range(group, count, group))]
    longest = max(range(len(groups)), key=lambda index: lengths[groups[index][0]])
    groups[0], groups[longest] = groups[longest], groups[0]
    return np.concatenate(groups)


class LengthGroupedEpochs(Dataset):
    """A TokenDataset read in its length_grouped_order, a new one each epoch. The Trainer reads it in sequence;
    accelerate's data loader calls `set_epoch` before every epoch, the one a resumed training goes on in too."""

    def __init__(self, dataset: TokenDataset, seed: int) -> None:
        self.dataset = dataset
        self.seed = seed
        self.set_epoch(0)

    def set_epoch(self, epoch: int) -> None:
        self.order = length_grouped_order(self.dataset.lengths, self.seed, epoch)

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int) -> dict[str, np.ndarray]:
        return self.dataset[int(self.order[index])]
