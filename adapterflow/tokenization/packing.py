"""Padding-free packing: several examples share a row without attending to each other.

Each example keeps its own position ids (0, 1, 2, ...); with no attention mask, transformers derives a
block-diagonal causal mask from where the position ids restart (`find_packed_sequence_indices`), for the
eager, SDPA and flash-attention kernels alike. The first label of every example is ignored, so no token is
trained to predict the first token of the next, unrelated example. A batch fills as few rows as hold it at
about `row_tokens` each (which bounds the attention mask), balanced so that rows end up nearly equally long
and only a few tail tokens are padded.
"""

from __future__ import annotations

import numpy as np
import torch

from adapterflow.tokenization.chat import IGNORE_INDEX
from adapterflow.tokenization.collate import TokenCounter


def balanced_rows(lengths: list[int], capacity: int) -> list[list[int]]:
    """Example indices per row: as many rows as `capacity` requires, longest example first into the
    shortest row, so rows come out nearly equal (padding a short row to the longest one is the waste)."""
    count = max(1, -(-sum(lengths) // capacity))
    rows: list[list[int]] = [[] for _ in range(count)]
    filled = [0] * count
    for index in sorted(range(len(lengths)), key=lambda i: -lengths[i]):
        row = filled.index(min(filled))
        rows[row].append(index)
        filled[row] += lengths[index]
    return [row for row in rows if row]


class PackedCollator:
    """Packs a batch of examples into as few rows of at most `row_tokens` tokens as fit."""

    def __init__(self, pad_token_id: int, row_tokens: int, multiple_of: int = 8) -> None:
        self.pad_token_id = pad_token_id
        self.row_tokens = row_tokens
        self.multiple_of = multiple_of
        self.counter = TokenCounter()

    def __call__(self, examples: list[dict[str, np.ndarray]]) -> dict[str, torch.Tensor]:
        return self.pack(examples)[0]

    def pack(self, examples: list[dict[str, np.ndarray]]) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
        """The packed batch, and which example (its index in `examples`) fills each position (-1: padding)."""
        lengths = [len(example["input_ids"]) for example in examples]
        rows = balanced_rows(lengths, self.row_tokens)
        width = -(-max(sum(lengths[i] for i in row) for row in rows) // self.multiple_of) * self.multiple_of
        input_ids = np.full((len(rows), width), self.pad_token_id, dtype=np.int64)
        labels = np.full((len(rows), width), IGNORE_INDEX, dtype=np.int64)
        positions = np.zeros((len(rows), width), dtype=np.int64)
        owners = np.full((len(rows), width), -1, dtype=np.int64)
        for row, members in enumerate(rows):
            start = 0
            for index in members:
                length = lengths[index]
                input_ids[row, start : start + length] = examples[index]["input_ids"]
                labels[row, start + 1 : start + length] = examples[index]["labels"][1:]  # first label: boundary
                positions[row, start : start + length] = np.arange(length)
                owners[row, start : start + length] = index
                start += length
            positions[row, start:] = np.arange(width - start)  # the padded tail is a sequence of its own
        self.counter.add(sum(lengths), input_ids.size)
        batch = {
            "input_ids": torch.from_numpy(input_ids),
            "labels": torch.from_numpy(labels),
            "position_ids": torch.from_numpy(positions),
        }
        return batch, torch.from_numpy(owners)


def next_token_loss(model: torch.nn.Module, batch: dict[str, torch.Tensor], reduction: str = "mean") -> tuple[torch.Tensor, int]:
    """Cross-entropy of every labelled next token, projecting only those positions onto the vocabulary.

    The vocabulary projection and softmax are the largest layers of a small model; prompt tokens (no label)
    skip them. Returns the loss (summed or averaged over label tokens, or `none`: one per label token, in row
    order) and the label-token count.
    """
    labels = batch["labels"]
    targets = labels[:, 1:]
    keep = torch.nn.functional.pad(targets != IGNORE_INDEX, (0, 1), value=False)  # position t predicts t + 1
    inputs = {name: tensor for name, tensor in batch.items() if name != "labels"}
    # use_cache=False: with a cache, transformers skips the packed-sequence mask (it assumes generation)
    logits = model(**inputs, logits_to_keep=keep, use_cache=False).logits
    logits = logits.reshape(-1, logits.shape[-1])
    wanted = targets[targets != IGNORE_INDEX]
    count = int(wanted.numel())
    if reduction == "none":
        return torch.nn.functional.cross_entropy(logits.float(), wanted, reduction="none"), count
    loss = torch.nn.functional.cross_entropy(logits.float(), wanted, reduction="sum")
    return (loss / max(count, 1) if reduction == "mean" else loss), count
