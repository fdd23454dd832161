"""Held-out loss and perplexity on the label tokens, classification accuracy and macro-F1 (scikit-learn), and
greedy answers generated in left-padded batches."""

from __future__ import annotations

import math
from typing import Any

import torch
from torch.utils.data import DataLoader

from adapterflow.core.devices import autocast
from adapterflow.tokenization.chat import IGNORE_INDEX
from adapterflow.tokenization.collate import ClassificationCollator, PadToLongest
from adapterflow.tokenization.dataset import TokenDataset
from adapterflow.tokenization.packing import PackedCollator, next_token_loss

# what evaluation reports, in display order; generation scores (generation_metrics.py) and the forgetting measure
# (forgetting.py) where they were computed
EVAL_METRICS = ("perplexity", "accuracy", "macro_f1", "loss", "rouge_l", "chrf", "bleu", "exact_match",
                "general_perplexity", "forgetting")


MAX_PERPLEXITY_LOSS = 50.0  # perplexity is reported as exp(min(loss, this)): a diverged model stays a number


def perplexity_of(loss: float) -> float:
    return math.exp(min(loss, MAX_PERPLEXITY_LOSS))


@torch.no_grad()
def response_perplexity(
    model: torch.nn.Module, dataset: TokenDataset, pad_token_id: int, batch_size: int, device: torch.device,
    precision: str, row_tokens: int = 1024, packed: bool = True,
) -> tuple[dict[str, float], dict[str, list[float]]]:
    """Token-weighted mean negative log-likelihood of the label tokens and its exponential, and per eval example
    (in eval order) its summed NLL (`nll`) and label-token count (`tokens`), which the gate's bootstrap resamples.

    Examples are packed like in training (no cross-attention, no padding), which gives the same numbers as
    one example at a time (see the packing equivalence test). Prompt-learning models prepend virtual tokens
    and can't take packed rows: `packed=False` pads instead and lets the model compute its loss.
    """
    model.eval()
    collate = PackedCollator(pad_token_id, row_tokens).pack if packed else PadToLongest(pad_token_id)
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=False, collate_fn=collate)
    total_nll, total_tokens = 0.0, 0
    nll: list[float] = []
    tokens: list[float] = []
    for batch in loader:
        if packed:
            batch, owners = batch
            examples = int(owners.max()) + 1  # every example fills at least one position
            owners = owners[:, 1:][batch["labels"][:, 1:] != IGNORE_INDEX]  # the example of each label token
        batch = {name: tensor.to(device) for name, tensor in batch.items()}
        with autocast(device, precision):
            if packed:
                losses, count = next_token_loss(model, batch, reduction="none")
            else:
                losses, owners, count = padded_token_losses(model, batch)
                examples = batch["input_ids"].shape[0]
        losses = losses.detach().double().cpu()
        total_nll += float(losses.sum())
        total_tokens += count
        nll += torch.zeros(examples, dtype=torch.float64).index_add_(0, owners.cpu(), losses).tolist()
        tokens += torch.bincount(owners.cpu(), minlength=examples).double().tolist()
    loss = total_nll / max(total_tokens, 1)
    metrics = {"loss": loss, "perplexity": perplexity_of(loss), "eval_tokens": float(total_tokens)}
    return metrics, {"nll": nll, "tokens": tokens}


def padded_token_losses(
    model: torch.nn.Module, batch: dict[str, torch.Tensor],
) -> tuple[torch.Tensor, torch.Tensor, int]:
    """The cross-entropy of every labelled next token of padded rows, the row of each, and their count (counted
    like `next_token_loss`).

    Prompt and P-tuning models return logits for their virtual tokens too, in front: the last positions
    are the input's own, so the same tokens are scored as for the base model.
    """
    labels = batch["labels"]
    logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
    logits = logits[:, -labels.shape[1]:-1].float()
    targets = labels[:, 1:]
    keep = targets != IGNORE_INDEX
    losses = torch.nn.functional.cross_entropy(logits[keep], targets[keep], reduction="none")
    return losses, keep.nonzero(as_tuple=True)[0], int(keep.sum())


def padded_next_token_loss(model: torch.nn.Module, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, int]:
    """Summed cross-entropy of every labelled next token of padded rows, and their count."""
    losses, _, count = padded_token_losses(model, batch)
    return losses.sum(), count


@torch.no_grad()
def classification_metrics(
    model: torch.nn.Module, dataset: TokenDataset, pad_token_id: int, batch_size: int, device: torch.device,
    precision: str,
) -> tuple[dict[str, float], dict[str, list[float]]]:
    """Accuracy, macro-F1 (scikit-learn's: the mean of per-class F1 over the classes that occur in references or
    predictions) and cross-entropy, and per eval example (in eval order) its reference class (`label`), predicted
    class (`predicted`), correctness (`correct`, 1 or 0) and cross-entropy (`nll`, over one `tokens`)."""
    from sklearn.metrics import accuracy_score, f1_score

    model.eval()
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=False, collate_fn=ClassificationCollator(pad_token_id))
    predictions, references, losses = [], [], []
    for batch in loader:
        batch = {name: tensor.to(device) for name, tensor in batch.items()}
        with autocast(device, precision):
            logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits.float()
        losses += torch.nn.functional.cross_entropy(logits, batch["labels"], reduction="none").tolist()
        predictions += logits.argmax(-1).tolist()
        references += batch["labels"].tolist()
    per_example = {"label": [float(label) for label in references], "predicted": [float(p) for p in predictions],
                   "correct": [float(p == label) for p, label in zip(predictions, references, strict=True)],
                   "nll": losses, "tokens": [1.0] * len(references)}
    if not references:
        return {"accuracy": 0.0, "macro_f1": 0.0, "loss": 0.0, "eval_examples": 0.0}, per_example
    return {"accuracy": float(accuracy_score(references, predictions)),
            "macro_f1": float(f1_score(references, predictions, average="macro", zero_division=0)),
            "loss": sum(losses) / len(references), "eval_examples": float(len(references))}, per_example


@torch.no_grad()
def generate_answers(
    model: torch.nn.Module,
    tokenizer: Any,
    conversations: list[list[dict[str, str]]],
    max_new_tokens: int,
    device: torch.device,
    precision: str,
    batch_size: int = 8,
) -> list[str]:
    """Greedy answers to each conversation, rendered with the chat template's generation prompt, `batch_size`
    conversations at a time (left-padded: generation continues from the right end of every row)."""
    model.eval()
    answers: list[str] = []
    padding_side = tokenizer.padding_side
    tokenizer.padding_side = "left"
    try:
        for start in range(0, len(conversations), batch_size):
            texts = tokenizer.apply_chat_template(conversations[start : start + batch_size], tokenize=False,
                                                  add_generation_prompt=True)
            inputs = tokenizer(texts, return_tensors="pt", padding=True, add_special_tokens=False).to(device)
            with autocast(device, precision):
                output = model.generate(
                    **inputs, max_new_tokens=max_new_tokens, do_sample=False, pad_token_id=tokenizer.pad_token_id,
                )
            new_tokens = output[:, inputs["input_ids"].shape[1] :]
            answers += [text.strip() for text in tokenizer.batch_decode(new_tokens, skip_special_tokens=True)]
    finally:
        tokenizer.padding_side = padding_side
    return answers
