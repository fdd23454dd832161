"""Batch collation that pads to the longest example only, and counts real versus padding tokens."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from adapterflow.tokenization.chat import IGNORE_INDEX


@dataclass
class TokenCounter:
    """Running totals the metrics callback turns into tokens/s and padding share."""

    real: int = 0
    padded: int = 0

    def add(self, real: int, computed: int) -> None:
        """Count a batch: `real` example tokens out of `computed` positions."""
        self.real += real
        self.padded += computed - real

    @property
    def padding_share(self) -> float:
        total = self.real + self.padded
        return self.padded / total if total else 0.0


class PadToLongest:
    """Right-pad a batch to its longest example (rounded up to a multiple for tensor-core friendly shapes)."""

    def __init__(self, pad_token_id: int, multiple_of: int = 8) -> None:
        self.pad_token_id = pad_token_id
        self.multiple_of = multiple_of
        self.counter = TokenCounter()

    def __call__(self, examples: list[dict[str, np.ndarray]]) -> dict[str, torch.Tensor]:
        lengths = [len(example["input_ids"]) for example in examples]
        width = -(-max(lengths) // self.multiple_of) * self.multiple_of
        input_ids = np.full((len(examples), width), self.pad_token_id, dtype=np.int64)
        attention = np.zeros((len(examples), width), dtype=np.int64)
        for row, (example, length) in enumerate(zip(examples, lengths, strict=True)):
            input_ids[row, :length] = example["input_ids"]
            attention[row, :length] = 1
        self.counter.add(sum(lengths), input_ids.size)
        return {
            "input_ids": torch.from_numpy(input_ids),
            "labels": self.labels(examples, lengths, width),
            "attention_mask": torch.from_numpy(attention),
        }

    @staticmethod
    def labels(examples: list[dict[str, np.ndarray]], lengths: list[int], width: int) -> torch.Tensor:
        """One label per token, padded with the ignore index."""
        labels = np.full((len(examples), width), IGNORE_INDEX, dtype=np.int64)
        for row, (example, length) in enumerate(zip(examples, lengths, strict=True)):
            labels[row, :length] = example["labels"]
        return torch.from_numpy(labels)


class ClassificationCollator(PadToLongest):
    """Pads token ids like PadToLongest; the label is one class index per example."""

    @staticmethod
    def labels(examples: list[dict[str, np.ndarray]], lengths: list[int], width: int) -> torch.Tensor:
        return torch.tensor([int(example["labels"][0]) for example in examples], dtype=torch.long)
