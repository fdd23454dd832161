"""Held-out loss and perplexity on the response tokens, and greedy sample generations."""

from __future__ import annotations

import math
from typing import Any

import torch
from torch.utils.data import DataLoader

from adapterflow.devices import autocast
from adapterflow.training.data import TokenDataset
from adapterflow.training.packing import PackedCollator, next_token_loss


@torch.no_grad()
def response_perplexity(
    model: torch.nn.Module, dataset: TokenDataset, pad_token_id: int, batch_size: int, device: torch.device,
    precision: str, row_tokens: int = 1024,
) -> dict[str, float]:
    """Token-weighted mean negative log-likelihood of the label tokens, and its exponential.

    Examples are packed like in training (no cross-attention, no padding), which gives the same numbers as
    one example at a time (see the packing equivalence test).
    """
    model.eval()
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=False, collate_fn=PackedCollator(pad_token_id, row_tokens))
    total_nll, total_tokens = 0.0, 0
    for batch in loader:
        batch = {name: tensor.to(device) for name, tensor in batch.items()}
        with autocast(device, precision):
            nll, count = next_token_loss(model, batch, reduction="sum")
        total_nll += float(nll)
        total_tokens += count
    loss = total_nll / max(total_tokens, 1)
    return {"loss": loss, "perplexity": math.exp(min(loss, 50.0)), "eval_tokens": float(total_tokens)}


@torch.no_grad()
def generate_answers(
    model: torch.nn.Module,
    tokenizer: Any,
    conversations: list[list[dict[str, str]]],
    max_new_tokens: int,
    device: torch.device,
    precision: str,
) -> list[str]:
    """Greedy answers to each conversation, rendered with the chat template's generation prompt."""
    if not conversations:
        return []
    model.eval()
    texts = tokenizer.apply_chat_template(conversations, tokenize=False, add_generation_prompt=True)
    tokenizer.padding_side = "left"  # generation continues from the right end of every row
    inputs = tokenizer(texts, return_tensors="pt", padding=True, add_special_tokens=False).to(device)
    with autocast(device, precision):
        output = model.generate(
            **inputs, max_new_tokens=max_new_tokens, do_sample=False, pad_token_id=tokenizer.pad_token_id,
        )
    new_tokens = output[:, inputs["input_ids"].shape[1] :]
    return [text.strip() for text in tokenizer.batch_decode(new_tokens, skip_special_tokens=True)]
