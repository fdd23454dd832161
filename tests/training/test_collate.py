"""Padding to the longest example, with counts of real and padding tokens."""

from __future__ import annotations

import numpy as np

from adapterflow.tokenization.chat import IGNORE_INDEX
from adapterflow.tokenization.collate import PadToLongest


def test_pads_to_longest_rounded_and_counts_padding() -> None:
    collate = PadToLongest(pad_token_id=0, multiple_of=4)
    batch = collate([
        {"input_ids": np.array([5, 6, 7]), "labels": np.array([-100, 6, 7])},
        {"input_ids": np.array([8, 9, 10, 11, 12]), "labels": np.array([8, 9, 10, 11, 12])},
    ])
    assert batch["input_ids"].shape == (2, 8)
    assert batch["input_ids"][0].tolist() == [5, 6, 7, 0, 0, 0, 0, 0]
    assert batch["labels"][0].tolist() == [IGNORE_INDEX, 6, 7] + [IGNORE_INDEX] * 5
    assert batch["attention_mask"].sum().item() == 8
    assert (collate.counter.real, collate.counter.padded) == (8, 8)
    assert collate.counter.padding_share == 0.5
