"""Held-out loss while training: what a sweep judges its trials by, and prunes them on.

The measurement leaves training exactly as it was: it runs in eval mode without gradients, and the random
number generators are restored afterwards (a DataLoader draws its seed from them), so a trial's adapter is
the adapter a plain run of the same settings trains.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from transformers import TrainerCallback

from adapterflow.evaluation.metrics import classification_metrics, response_perplexity
from adapterflow.tokenization.dataset import TokenDataset
from schemas.method import MethodVariant


class TrainingPruned(Exception):
    """Training was stopped at `step`: its held-out loss there said it would not be the best."""

    def __init__(self, step: int, loss: float) -> None:
        super().__init__(f"pruned at step {step} (eval loss {loss:.4f})")
        self.step = step
        self.loss = loss


@dataclass
class HeldOutProbe:
    """Measure the eval split's loss every `every_steps` optimizer steps and at the last step. `report(step, loss)`
    returns True to stop training there; the last step always completes."""

    every_steps: int
    report: Callable[[int, float], bool]
    batch_size: int = 8
    history: list[tuple[int, float]] = field(default_factory=list)


def held_out_loss(
    model: torch.nn.Module, dataset: TokenDataset, task: str, pad_token_id: int, batch_size: int,
    device: torch.device, precision: str, packed: bool,
) -> float:
    """The eval split's loss as evaluation computes it: mean cross-entropy of the label tokens (per example for
    classifiers)."""
    if task == "classification":
        return classification_metrics(model, dataset, pad_token_id, batch_size, device, precision)[0]["loss"]
    return response_perplexity(model, dataset, pad_token_id, batch_size, device, precision, packed=packed)["loss"]


class HeldOutLossCallback(TrainerCallback):
    """Runs a HeldOutProbe at the end of optimizer steps; raises TrainingPruned when its report says stop."""

    def __init__(self, probe: HeldOutProbe, measure: Callable[[torch.nn.Module], float], device: torch.device) -> None:
        self.probe = probe
        self.measure = measure
        self.device = device

    def on_step_end(self, args: Any, state: Any, control: Any, model: Any = None, **kwargs: Any) -> None:
        last = state.global_step >= state.max_steps
        if state.global_step % self.probe.every_steps and not last:
            return
        if any(step == state.global_step for step, _ in self.probe.history):
            return  # a training restarted after running out of memory: this step was measured and reported
        with torch.random.fork_rng(devices=[self.device] if self.device.type == "cuda" else []):
            loss = self.measure(model)
        model.train()
        self.probe.history.append((state.global_step, loss))
        if self.probe.report(state.global_step, loss) and not last:
            raise TrainingPruned(state.global_step, loss)


def held_out_callback(
    probe: HeldOutProbe, tokenized_dir: Path, method: MethodVariant, task: str, pad_token_id: int,
    device: torch.device, precision: str,
) -> HeldOutLossCallback:
    """The probe as a Trainer callback over the tokenized eval split (padded for prompt learning, like evaluation)."""
    dataset = TokenDataset(tokenized_dir / "eval.parquet")

    def measure(model: torch.nn.Module) -> float:
        return held_out_loss(model, dataset, task, pad_token_id, probe.batch_size, device, precision,
                             packed=not method.prompt_learning)

    return HeldOutLossCallback(probe, measure, device)
