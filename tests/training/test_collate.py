"""Padding to the longest example, with counts of real and padding tokens; the length-grouped order of unpacked
examples."""

from __future__ import annotations

import numpy as np

from adapterflow.tokenization.chat import IGNORE_INDEX
from adapterflow.tokenization.collate import PadToLongest
from adapterflow.tokenization.dataset import length_grouped_order


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


def test_the_length_grouped_order_groups_lengths_and_depends_only_on_seed_and_epoch() -> None:
    lengths = np.random.default_rng(0).integers(5, 500, 2000)
    order = length_grouped_order(lengths, seed=7, epoch=0)
    assert sorted(order.tolist()) == list(range(2000))  # every example once
    assert np.array_equal(order, length_grouped_order(lengths, seed=7, epoch=0))
    assert not np.array_equal(order, length_grouped_order(lengths, seed=7, epoch=1))
    grouped = lengths[order].reshape(-1, 8)  # micro-batches of 8 pad less than in a shuffled order
    shuffled = lengths[np.random.default_rng(1).permutation(2000)].reshape(-1, 8)
    assert (grouped.max(axis=1) - grouped.min(axis=1)).mean() < 0.2 * (shuffled.max(axis=1) - shuffled.min(axis=1)).mean()
    assert lengths[order[0]] == lengths.max()  # the longest batch first: out of memory shows at the first step
