"""Held-out loss while training, on the validation split: what early stopping follows, and what a sweep judges
its trials by and prunes them on (training/validation_curve.py measures it)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch

from adapterflow.evaluation.metrics import classification_metrics, response_perplexity
from adapterflow.tokenization.dataset import TokenDataset
from schemas.method import MethodVariant


class TrainingPruned(Exception):
    """Training was stopped at `step`: its held-out loss there said it would not be the best."""

    def __init__(self, step: int, loss: float) -> None:
        super().__init__(f"pruned at step {step} (validation loss {loss:.4f})")
        self.step = step
        self.loss = loss


@dataclass
class HeldOutProbe:
    """A sweep's trial: the validation loss every `every_steps` optimizer steps and at the last step goes to
    `report(step, loss)`, which returns True to stop training there; the last step always completes."""

    every_steps: int
    report: Callable[[int, float], bool]
    batch_size: int = 8
    history: list[tuple[int, float]] = field(default_factory=list)


def held_out_loss(
    model: torch.nn.Module, dataset: TokenDataset, task: str, pad_token_id: int, batch_size: int,
    device: torch.device, precision: str, packed: bool,
) -> float:
    """A held-out split's loss as evaluation computes it: mean cross-entropy of the label tokens (per example for
    classifiers)."""
    if task == "classification":
        return classification_metrics(model, dataset, pad_token_id, batch_size, device, precision)[0]["loss"]
    return response_perplexity(model, dataset, pad_token_id, batch_size, device, precision, packed=packed)[0]["loss"]


def validation_measure(
    tokenized_dir: Path, method: MethodVariant, task: str, pad_token_id: int, device: torch.device, precision: str,
    batch_size: int,
) -> Callable[[torch.nn.Module], float] | None:
    """The validation split's loss as a function of the model (padded for prompt learning, like evaluation);
    None when the data has no validation split."""
    path = tokenized_dir / "validation.parquet"
    if not path.is_file():
        return None
    dataset = TokenDataset(path)

    def measure(model: torch.nn.Module) -> float:
        return held_out_loss(model, dataset, task, pad_token_id, batch_size, device, precision,
                             packed=not method.prompt_learning)

    return measure
