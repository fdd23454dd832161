"""Optimisation settings handed to the transformers Trainer."""

from __future__ import annotations

import re
from typing import Literal

from pydantic import Field, field_validator, model_validator

from schemas.base import StrictModel

Precision = Literal["auto", "bf16", "fp16", "fp32"]


class DistributedConfig(StrictModel):
    """Data-parallel training on several processes (one per GPU) launched with torchrun."""

    num_processes: int = Field(
        1, ge=1, le=64, description="training processes, one per GPU (on CPU: processes sharing the cores); "
        "1: train in the pipeline's own process"
    )
    strategy: Literal["ddp", "fsdp"] = Field(
        "ddp", description="ddp: every process holds the whole model; fsdp: weights, gradients and optimizer "
        "state are sharded across processes (for models too big for one GPU)"
    )
    backend: Literal["auto", "nccl", "gloo"] = Field(
        "auto", description="collective-communication backend; auto: nccl on CUDA, gloo on CPU"
    )


class EarlyStoppingConfig(StrictModel):
    """Stop when the validation curve stops improving; the best step's weights are what gets evaluated."""

    enabled: bool = Field(True, description="stop early on the validation curve (needs a validation split)")
    patience: int = Field(3, ge=1, description="validation measurements in a row without improvement before stopping")
    min_delta: float = Field(
        0.0, ge=0, description="how much lower than the best so far a measurement must be to count as improvement"
    )
    metric: Literal["val/loss"] = Field(
        "val/loss", description="the curve to follow, lower is better: validation loss (of the label tokens; "
        "per example for classifiers)"
    )


def parse_duration(value: object) -> object:
    """`90s`, `20m`, `1h30m` or a number of seconds -> seconds; anything else is left for pydantic to reject."""
    if isinstance(value, str):
        match = re.fullmatch(r"\s*(?:(\d+(?:\.\d+)?)h)?\s*(?:(\d+(?:\.\d+)?)m)?\s*(?:(\d+(?:\.\d+)?)s)?\s*", value)
        if not match or not any(match.groups()):
            raise ValueError(f"{value!r} is no duration: write it like 90s, 20m or 1h30m")
        hours, minutes, seconds = (float(part or 0) for part in match.groups())
        return hours * 3600 + minutes * 60 + seconds
    return value


class TrainingConfig(StrictModel):
    """How long and how hard to train."""

    epochs: float = Field(1.0, gt=0, description="passes over the training rows at most (ignored when max_steps is "
                          "set); early stopping and time_budget can end training sooner")
    max_steps: int | None = Field(None, ge=1, description="optimizer steps at most; overrides epochs")
    time_budget: float | None = Field(
        None, gt=0, description="wall time for the training loop, validation included (e.g. 20m, 1h30m): after a "
        "few timed steps the number of steps is set to end within it and the learning-rate schedule fitted to "
        "that number; epochs and max_steps stay upper bounds. None: no budget"
    )
    eval_steps: int | Literal["auto"] = Field(
        "auto", description="measure the validation loss every N optimizer steps (and at the last step); auto: "
        "from the measured cost of one measurement, so that validation takes about 8% of the training time"
    )
    early_stopping: EarlyStoppingConfig = Field(default_factory=EarlyStoppingConfig)
    batch_size: int = Field(
        4, ge=1, description="examples per process per micro-batch; the global batch of one optimizer step is "
        "batch_size x gradient_accumulation_steps x distributed.num_processes"
    )
    gradient_accumulation_steps: int = Field(1, ge=1, description="micro-batches per optimizer step")
    learning_rate: float | None = Field(
        None, gt=0, lt=1, description="peak learning rate; None: the method's default (2e-4 for LoRA, 2e-5 full, 3e-2 prompt)"
    )
    lr_scheduler: Literal["linear", "cosine", "constant", "constant_with_warmup"] = Field(
        "cosine", description="learning-rate schedule after warm-up"
    )
    warmup_ratio: float = Field(0.05, ge=0, lt=1, description="share of steps spent warming up")
    weight_decay: float = Field(0.0, ge=0, description="AdamW weight decay")
    max_grad_norm: float = Field(1.0, gt=0, description="gradient clipping norm")
    precision: Precision = Field(
        "auto", description="auto: bf16 on CUDA and on CPUs with bf16 support, fp16 on older GPUs, fp32 otherwise"
    )
    gradient_checkpointing: bool = Field(False, description="trade compute for activation memory")
    fit_memory: bool = Field(
        True, description="when the memory estimate says the configured micro-batch won't fit, train with what "
        "does: sdpa attention, then smaller micro-batches with more accumulation steps (the same effective "
        "batch), then gradient checkpointing; and when CUDA still runs out of memory while training, halve the "
        "micro-batch, double accumulation and go on from the newest checkpoint; false: stop instead with advice "
        "(single-process runs; several processes stop)"
    )
    packing: bool = Field(
        True, description="pack examples into shared rows without cross-attention (no padding); off, and for "
        "prompt-learning methods and classification where packing doesn't apply: batches grouped by length"
    )
    attention: Literal["auto", "eager", "sdpa", "flash_attention_2"] = Field(
        "auto", description="attention kernel; auto: sdpa on CUDA; on CPU eager for short rows, sdpa for long ones "
                            "(the measured crossover: adapterflow.core.devices.CPU_SDPA_FROM_ROW_LENGTH)"
    )
    fused_loss: Literal["auto", "on", "off"] = Field(
        "auto", description="Liger-Kernel's fused linear cross-entropy for the loss at labelled positions (CUDA, "
        "the `cuda` extra): it never materialises their logits; auto: on CUDA with liger-kernel installed and a "
        "vocabulary of 32k tokens or more (adapterflow.core.devices.FUSED_LOSS_FROM_VOCABULARY); CPU never"
    )
    optimizer: Literal["adamw_torch", "adamw_torch_fused", "adamw_8bit", "adafactor", "sgd"] = Field(
        "adamw_torch_fused", description="optimizer (transformers names; fused: one kernel for all parameters, "
        "12% faster LoRA steps on CPU here); adamw_8bit needs bitsandbytes on CUDA"
    )
    logging_steps: int = Field(5, ge=1, description="log training metrics every N steps")
    checkpoint_steps: int | None = Field(
        100, ge=1, description="save a checkpoint (trained weights, optimizer, scheduler, RNG states, data position) "
        "every N optimizer steps in the run's store; a retry or a new run of the same config after a crash goes on "
        "from the newest one; None: no checkpoints"
    )
    keep_checkpoints: int = Field(2, ge=1, description="how many of the newest checkpoints to keep while training")
    seed: int = Field(42, description="seed of initialisation, shuffling and dropout")
    distributed: DistributedConfig = Field(
        default_factory=DistributedConfig, description="multi-process (multi-GPU) training"
    )
    warm_start: Literal["none", "champion"] = Field(
        "none", description="champion: continue from the registered champion's adapter (same method settings and "
        "base model) instead of a fresh one; none, or no champion yet: from scratch"
    )

    @field_validator("time_budget", mode="before")
    @classmethod
    def _duration(cls, value: object) -> object:
        return parse_duration(value)

    @field_validator("eval_steps")
    @classmethod
    def _positive_steps(cls, value: int | str) -> int | str:
        if isinstance(value, int) and value < 1:
            raise ValueError("eval_steps must be at least 1 (or auto)")
        return value

    @model_validator(mode="after")
    def _some_length(self) -> TrainingConfig:
        if self.max_steps is None and self.epochs <= 0:
            raise ValueError("set epochs > 0 or max_steps")
        return self
