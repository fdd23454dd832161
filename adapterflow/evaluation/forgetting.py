"""Forgetting: how much worse a fine-tuned model predicts general-domain text than its base model.

The measure is the perplexity of each model on a general set (the packaged general English passages, or the
user's `evaluation.general_set`), and the relative change of a fine-tuned model's against the base model's:
+0.10 means 10% higher perplexity on general text than before fine-tuning.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader

from adapterflow.core.devices import autocast
from adapterflow.core.errors import AdapterflowError
from adapterflow.evaluation.metrics import padded_next_token_loss, perplexity_of
from adapterflow.tokenization.collate import PadToLongest

# 206 short everyday-English passages written for this project (its license): no code, no API docs, so a
# model tuned on technical text is measured on what it may lose
PACKAGED_GENERAL_SET = Path(__file__).resolve().parent / "eval_data" / "general_english.txt"
GENERAL_SET_KEY = "evaluation.general_set"


def load_general_passages(path: Path | None, limit: int) -> list[str]:
    """The first `limit` passages of a .txt file (one per non-empty line) or a .jsonl file (a "text" field per
    line); the packaged set when `path` is None."""
    source = path or PACKAGED_GENERAL_SET
    try:
        lines = source.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as error:
        raise AdapterflowError(f"can't read the general set {source}: {error}",
                               hint=f"{GENERAL_SET_KEY} must name a readable UTF-8 .txt or .jsonl file") from error
    passages = []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        passages.append(_jsonl_text(source, number, line) if source.suffix.lower() == ".jsonl" else line.strip())
        if len(passages) == limit:
            break
    if not passages:
        raise AdapterflowError(f"the general set {source} holds no passages",
                               hint=f"give {GENERAL_SET_KEY} a file with text, or set evaluation.general_passages: 0")
    return passages


def _jsonl_text(source: Path, number: int, line: str) -> str:
    try:
        text = json.loads(line).get("text")
    except (json.JSONDecodeError, AttributeError):
        text = None
    if not isinstance(text, str) or not text.strip():
        raise AdapterflowError(f"line {number} of the general set {source} is not a JSON object with a 'text' string",
                               hint=f"{GENERAL_SET_KEY}: one {{\"text\": \"...\"}} per line")
    return text.strip()


@torch.no_grad()
def general_perplexity(
    model: torch.nn.Module, tokenizer: Any, passages: list[str], batch_size: int, device: torch.device,
    precision: str,
) -> dict[str, float]:
    """Token-weighted loss and perplexity of a causal LM on every token of the passages after their first."""
    model.eval()
    encoded = tokenizer(passages, add_special_tokens=True)["input_ids"]
    examples = [{"input_ids": np.asarray(ids), "labels": np.asarray(ids)} for ids in encoded if len(ids) > 1]
    loader = DataLoader(examples, batch_size=batch_size, shuffle=False, collate_fn=PadToLongest(tokenizer.pad_token_id))
    total_nll, total_tokens = 0.0, 0
    for batch in loader:
        batch = {name: tensor.to(device) for name, tensor in batch.items()}
        with autocast(device, precision):
            nll, count = padded_next_token_loss(model, batch)
        total_nll += float(nll)
        total_tokens += count
    loss = total_nll / max(total_tokens, 1)
    return {"general_loss": loss, "general_perplexity": perplexity_of(loss)}


def forgetting(base_perplexity: float, perplexity: float) -> float:
    """Relative change of general-text perplexity against the base model's (positive: worse than base)."""
    return (perplexity - base_perplexity) / base_perplexity
