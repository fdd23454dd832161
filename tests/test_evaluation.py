"""Perplexity counts only label tokens; generation returns one answer per prompt."""

from __future__ import annotations

import math

import numpy as np
import torch

from adapterflow.evaluation import response_perplexity


class UniformModel(torch.nn.Module):
    """Predicts every token with equal probability: perplexity equals the vocabulary size."""

    def __init__(self, vocab: int) -> None:
        super().__init__()
        self.vocab = vocab

    def forward(self, input_ids, logits_to_keep=None, **kwargs):
        logits = torch.zeros(*input_ids.shape, self.vocab)
        if logits_to_keep is not None:  # a boolean mask, as transformers models take it: flattened rows
            logits = logits[logits_to_keep]
        return type("Out", (), {"logits": logits})()


class ListDataset(torch.utils.data.Dataset):
    def __init__(self, items):
        self.items = items

    def __len__(self):
        return len(self.items)

    def __getitem__(self, index):
        return self.items[index]


def test_uniform_model_has_perplexity_of_the_vocabulary() -> None:
    items = [
        {"input_ids": np.array([1, 2, 3, 4]), "labels": np.array([-100, -100, 3, 4])},
        {"input_ids": np.array([1, 2]), "labels": np.array([-100, 2])},
    ]
    result = response_perplexity(UniformModel(50), ListDataset(items), 0, 2, torch.device("cpu"), "fp32")
    assert result["eval_tokens"] == 3
    assert math.isclose(result["perplexity"], 50, rel_tol=1e-5)
