"""Held-out loss and perplexity on the label tokens, classification accuracy and macro-F1, and greedy
sample generations."""

from __future__ import annotations

import math
from typing import Any

import torch
from torch.utils.data import DataLoader

from adapterflow.devices import autocast
from adapterflow.tokenization import IGNORE_INDEX
from adapterflow.training.collate import ClassificationCollator, PadToLongest
from adapterflow.training.data import TokenDataset
from adapterflow.training.packing import PackedCollator, next_token_loss

EVAL_METRICS = ("perplexity", "accuracy", "macro_f1", "loss")  # what evaluation reports, in display order


@torch.no_grad()
def response_perplexity(
    model: torch.nn.Module, dataset: TokenDataset, pad_token_id: int, batch_size: int, device: torch.device,
    precision: str, row_tokens: int = 1024, packed: bool = True,
) -> dict[str, float]:
    """Token-weighted mean negative log-likelihood of the label tokens, and its exponential.

    Examples are packed like in training (no cross-attention, no padding), which gives the same numbers as
    one example at a time (see the packing equivalence test). Prompt-learning models prepend virtual tokens
    and can't take packed rows: `packed=False` pads instead and lets the model compute its loss.
    """
    model.eval()
    collate = PackedCollator(pad_token_id, row_tokens) if packed else PadToLongest(pad_token_id)
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=False, collate_fn=collate)
    total_nll, total_tokens = 0.0, 0
    for batch in loader:
        batch = {name: tensor.to(device) for name, tensor in batch.items()}
        with autocast(device, precision):
            if packed:
                nll, count = next_token_loss(model, batch, reduction="sum")
            else:
                nll, count = padded_next_token_loss(model, batch)
        total_nll += float(nll)
        total_tokens += count
    loss = total_nll / max(total_tokens, 1)
    return {"loss": loss, "perplexity": math.exp(min(loss, 50.0)), "eval_tokens": float(total_tokens)}


def padded_next_token_loss(model: torch.nn.Module, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, int]:
    """Summed cross-entropy of every labelled next token of padded rows, counted like `next_token_loss`.

    Prompt and P-tuning models return logits for their virtual tokens too, in front: the last positions
    are the input's own, so the same tokens are scored as for the base model.
    """
    labels = batch["labels"]
    logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
    logits = logits[:, -labels.shape[1]:-1].float()
    targets = labels[:, 1:]
    keep = targets != IGNORE_INDEX
    loss = torch.nn.functional.cross_entropy(logits[keep], targets[keep], reduction="sum")
    return loss, int(keep.sum())


@torch.no_grad()
def classification_metrics(
    model: torch.nn.Module, dataset: TokenDataset, pad_token_id: int, batch_size: int, device: torch.device,
    precision: str,
) -> tuple[dict[str, float], list[int]]:
    """Accuracy, macro-F1 (the mean of per-class F1 over the classes present) and cross-entropy, and the
    predicted class of every example."""
    model.eval()
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=False, collate_fn=ClassificationCollator(pad_token_id))
    predictions, references, total_loss = [], [], 0.0
    for batch in loader:
        batch = {name: tensor.to(device) for name, tensor in batch.items()}
        with autocast(device, precision):
            logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits.float()
        total_loss += float(torch.nn.functional.cross_entropy(logits, batch["labels"], reduction="sum"))
        predictions += logits.argmax(-1).tolist()
        references += batch["labels"].tolist()
    count = max(len(references), 1)
    return {"accuracy": sum(p == r for p, r in zip(predictions, references, strict=True)) / count,
            "macro_f1": macro_f1(predictions, references), "loss": total_loss / count,
            "eval_examples": float(len(references))}, predictions


def macro_f1(predictions: list[int], references: list[int]) -> float:
    classes = sorted(set(references) | set(predictions))
    scores = []
    for label in classes:
        true_positive = sum(p == r == label for p, r in zip(predictions, references, strict=True))
        predicted, actual = predictions.count(label), references.count(label)
        scores.append(2 * true_positive / (predicted + actual) if predicted + actual else 0.0)
    return sum(scores) / len(scores) if scores else 0.0


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
