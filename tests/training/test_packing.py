"""Packing without cross-talk: a packed batch gives the loss of its examples run one at a time."""

from __future__ import annotations

from importlib.util import find_spec
from pathlib import Path

import numpy as np
import pytest
import torch

from adapterflow.evaluation.metrics import padded_next_token_loss
from adapterflow.tokenization.collate import PadToLongest
from adapterflow.tokenization.packing import PackedCollator, balanced_rows, next_token_loss
from adapterflow.training.trainer import supports_flex_attention

# flex attention runs forward only on CPU (no backward there) and compiles every new shape: about 45 s cold here
HAS_FLEX = find_spec("torch.nn.attention.flex_attention") is not None
FLEX = [pytest.param("flex_attention", marks=pytest.mark.slow)] if HAS_FLEX else []


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


@pytest.mark.parametrize("kernel", ["eager", "sdpa", *FLEX])
def test_packed_rows_give_the_padded_batch_loss_with_every_cpu_kernel(tiny_model_dir: Path, kernel: str) -> None:
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.float32, attn_implementation=kernel)
    batch_examples = examples(1)
    with torch.no_grad():
        packed = PackedCollator(pad_token_id=0, row_tokens=32)(batch_examples)  # several rows, padded tails
        assert packed["input_ids"].shape[0] > 1
        packed_loss, packed_count = next_token_loss(model.eval(), packed)
        padded_sum, padded_count = padded_next_token_loss(model, PadToLongest(pad_token_id=0)(batch_examples))
    assert packed_count == padded_count
    assert float(packed_loss) == pytest.approx(float(padded_sum) / padded_count, rel=1e-4)


def test_flash_attention_separates_packed_examples_only_in_single_row_batches() -> None:
    # why select_attention refuses flash_attention_2 with packing: transformers' check, on PackedCollator's rows
    from transformers.modeling_flash_attention_utils import _is_packed_sequence

    rows = PackedCollator(pad_token_id=0, row_tokens=32)(examples(0))["position_ids"]
    assert rows.shape[0] > 1
    assert _is_packed_sequence(rows[:1], batch_size=1)
    assert not _is_packed_sequence(rows, batch_size=rows.shape[0])


def test_flex_attention_support_is_read_from_the_model_class(tiny_model_dir: Path, tmp_path: Path) -> None:
    from transformers import GPT2Config

    assert supports_flex_attention(str(tiny_model_dir))  # LlamaForCausalLM
    GPT2Config(architectures=["GPT2LMHeadModel"]).save_pretrained(tmp_path)
    assert not supports_flex_attention(str(tmp_path))


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
