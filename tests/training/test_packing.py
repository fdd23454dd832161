"""Packing without cross-talk: a packed batch gives the loss of its examples run one at a time."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from adapterflow.tokenization.packing import PackedCollator, balanced_rows, next_token_loss


@pytest.fixture(scope="module", params=["sdpa", "eager"])
def model(tiny_model_dir: Path, request: pytest.FixtureRequest):
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.float32, attn_implementation=request.param).eval()


def examples(seed: int) -> list[dict[str, np.ndarray]]:
    rng = np.random.default_rng(seed)
    result = []
    for length in (5, 17, 9, 30, 12, 3, 25):
        ids = rng.integers(5, 400, length)
        labels = ids.copy()
        labels[: length // 3] = -100  # a prompt without labels, like chat examples
        result.append({"input_ids": ids, "labels": labels})
    return result


@pytest.mark.parametrize("row_tokens", [1024, 32])  # one shared row, and several rows with padded tails
def test_packed_loss_equals_one_at_a_time(model, row_tokens: int) -> None:
    batch_examples = examples(0)
    with torch.no_grad():
        total, count = 0.0, 0
        for example in batch_examples:
            single = {"input_ids": torch.tensor(example["input_ids"])[None], "labels": torch.tensor(example["labels"])[None]}
            loss, tokens = next_token_loss(model, single, reduction="sum")
            reference = model(**single).loss  # transformers' own loss for this example alone
            assert float(loss) / tokens == pytest.approx(float(reference), rel=1e-5)
            total, count = total + float(loss), count + tokens
        batch = PackedCollator(pad_token_id=0, row_tokens=row_tokens)(batch_examples)
        packed, packed_count = next_token_loss(model, batch)
    assert packed_count == count
    relative = abs(float(packed) - total / count) / (total / count)
    assert relative < 1e-4, relative
    assert (batch["input_ids"].shape[0] == 1) == (row_tokens == 1024)


def test_collator_resets_positions_masks_boundaries_and_counts_padding() -> None:
    collate = PackedCollator(pad_token_id=0, row_tokens=8, multiple_of=4)
    batch = collate([{"input_ids": np.array([1, 2, 3]), "labels": np.array([1, 2, 3])},
                     {"input_ids": np.array([4, 5, 6, 7, 8]), "labels": np.array([4, 5, 6, 7, 8])}])
    assert batch["input_ids"].tolist() == [[4, 5, 6, 7, 8, 1, 2, 3]]
    assert batch["position_ids"].tolist() == [[0, 1, 2, 3, 4, 0, 1, 2]]
    assert batch["labels"].tolist() == [[-100, 5, 6, 7, 8, -100, 2, 3]]  # no label across the boundary
    assert "attention_mask" not in batch
    assert collate.counter.padded == 0 and collate.counter.real == 8


def test_balanced_rows() -> None:
    assert balanced_rows([5, 3, 4, 2], capacity=7) == [[0, 3], [2, 1]]  # 7 and 7, not 7 and 7 by luck
    assert balanced_rows([9, 1, 1, 1], capacity=100) == [[0, 1, 2, 3]]
    rows = balanced_rows([80, 85, 90, 70, 88, 92, 75, 81], capacity=512)
    sizes = [sum([80, 85, 90, 70, 88, 92, 75, 81][i] for i in row) for row in rows]
    assert len(rows) == 2 and max(sizes) - min(sizes) <= 20
