"""Trainer callbacks: training metrics into the pipeline's MLflow run, under adapterflow's names."""

from __future__ import annotations

import resource
import sys
import time
from typing import Any

import torch
from transformers import TrainerCallback

from adapterflow.core.devices import device_properties
from adapterflow.tokenization.collate import TokenCounter
from adapterflow.tracking.run import RunTracker
from adapterflow.training.flops import peak_flops

SKIPPED_STEPS = "skipped_steps"  # logged by AdapterflowTrainer under fp16: steps the loss scaler skipped so far

TRAINER_TO_METRIC = {
    "loss": "train/loss",
    "learning_rate": "train/learning_rate",
    "grad_norm": "train/grad_norm",
    "epoch": "train/epoch",
    SKIPPED_STEPS: "train/skipped_steps",
}


def peak_memory_mb(device: torch.device) -> float:
    """Peak accelerator memory on CUDA, peak resident memory of the process on CPU."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 2**20 if sys.platform == "darwin" else peak / 2**10  # bytes on macOS, KiB on Linux


class ThroughputMetrics(TrainerCallback):
    """Logs loss, learning rate, grad norm (and fp16 skipped steps), real tokens/s and padding share at each
    logging step."""

    def __init__(self, counter: TokenCounter, device: torch.device, tracker: RunTracker | None = None,
                 flops_per_token: float | None = None) -> None:
        self.counter = counter
        self.device = device
        self.tracker = tracker
        self.flops_per_token = flops_per_token
        self.history: list[dict[str, float]] = []
        self._last_time = time.perf_counter()
        self._last_tokens = 0
        self._started = self._last_time

    def on_train_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        self._started = self._last_time = time.perf_counter()
        self._last_tokens = self.counter.real

    def on_log(self, args: Any, state: Any, control: Any, logs: dict[str, float] | None = None, **kwargs: Any) -> None:
        if not logs or "loss" not in logs:
            return
        now = time.perf_counter()
        metrics = {name: float(logs[key]) for key, name in TRAINER_TO_METRIC.items() if key in logs}
        metrics["train/tokens_per_second"] = (self.counter.real - self._last_tokens) / max(now - self._last_time, 1e-9)
        metrics["train/padding_share"] = self.counter.padding_share
        self._last_time, self._last_tokens = now, self.counter.real
        self.history.append({"step": state.global_step, **metrics})
        if self.tracker is not None:
            self.tracker.log_metrics(metrics, step=state.global_step)

    def latest(self, step: int) -> dict[str, float]:
        """The metrics logged at `step` (empty when that step logged none)."""
        if self.history and self.history[-1]["step"] == step:
            return self.history[-1]
        return {}

    def summary(self) -> dict[str, float]:
        """Whole-run figures: real tokens/s, padding share, peak memory."""
        elapsed = max(time.perf_counter() - self._started, 1e-9)
        peak = peak_flops(device_properties(self.device))
        mfu = {}
        if peak and self.flops_per_token:
            # model FLOPs utilisation: the model FLOPs of the real tokens trained (training/flops.py) over the peak
            mfu = {"train/mfu": self.counter.real / elapsed * self.flops_per_token / peak}
        return mfu | {
            "train/tokens_per_second": self.counter.real / elapsed,
            "train/padding_share": self.counter.padding_share,
            "train/peak_memory_mb": peak_memory_mb(self.device),
            "train/runtime_seconds": elapsed,
            "train/real_tokens": float(self.counter.real),
        }


class AdaLoraBudget(TrainerCallback):
    """AdaLoRA re-allocates its rank budget after every optimizer step, while the gradients are still there."""

    def on_optimizer_step(self, args: Any, state: Any, control: Any, model: Any = None, **kwargs: Any) -> None:
        model.base_model.update_and_allocate(state.global_step)
