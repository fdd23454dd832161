"""Fit training into the memory there is: the decision, as a pure function of the estimate and free memory.

When the configured micro-batch is estimated not to fit, the plan tries what costs the least throughput first,
and never what changes the result of training (the effective batch, batch_size x gradient_accumulation_steps,
stays as configured):
  1. an attention kernel that keeps no score matrices (sdpa instead of eager: the scores grow with the row);
  2. smaller micro-batches with proportionally more accumulation steps, the largest that fits;
  3. gradient checkpointing (a second forward pass per step), again with the largest micro-batch that fits.
Only when none of these fits does training stop, with the numbers and what else helps.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace

from adapterflow.core.errors import AdapterflowError
from adapterflow.methods.memory import MemoryEstimate, check_fits, format_bytes
from schemas.training import TrainingConfig

MAX_TAG_CHARS = 8000  # MLflow's limit on a tag's value
SCORE_KEEPING_KERNELS = ("eager",)  # attention kernels that keep heads x row x row score matrices for backward


@dataclass(frozen=True)
class MemorySettings:
    """The training settings that trade speed for memory without changing what is learned."""

    batch_size: int
    gradient_accumulation_steps: int
    attention: str
    gradient_checkpointing: bool

    @property
    def effective_batch(self) -> int:
        return self.batch_size * self.gradient_accumulation_steps

    def describe(self) -> str:
        """E.g. "batch_size 2 x 4 accumulation steps, sdpa attention, gradient checkpointing"."""
        text = (f"batch_size {self.batch_size} x {self.gradient_accumulation_steps} accumulation "
                f"step{'s' if self.gradient_accumulation_steps > 1 else ''}, {self.attention} attention")
        return text + (", gradient checkpointing" if self.gradient_checkpointing else "")


@dataclass(frozen=True)
class MemoryPlan:
    """The settings training runs with, their estimate, and why they were chosen."""

    settings: MemorySettings
    configured: MemorySettings
    estimate: MemoryEstimate
    available: int | None  # bytes training may take; None: unknown, nothing was checked
    reasons: tuple[str, ...]  # every option tried, in order, and the choice

    @property
    def changed(self) -> bool:
        return self.settings != self.configured

    def as_metrics(self) -> dict[str, float]:
        """The chosen settings under `memory/plan_*` names, and the memory available when known."""
        metrics = {
            "memory/plan_batch_size": float(self.settings.batch_size),
            "memory/plan_gradient_accumulation_steps": float(self.settings.gradient_accumulation_steps),
            "memory/plan_gradient_checkpointing": float(self.settings.gradient_checkpointing),
            "memory/plan_changed": float(self.changed),
        }
        if self.available is not None:
            metrics["memory/available_mb"] = self.available / 2**20
        return metrics

    def as_tags(self) -> dict[str, str]:
        """The chosen attention kernel and the reasons, as run tags (a retry may choose differently)."""
        return {"adapterflow.memory_plan.attention": self.settings.attention,
                "adapterflow.memory_plan": " | ".join(self.reasons)[:MAX_TAG_CHARS]}


def plan_memory(
    estimate: Callable[[MemorySettings], MemoryEstimate],
    configured: MemorySettings,
    available: int | None,
    *,
    fit: bool = True,
    fused_attention: str | None = "sdpa",
    method: str = "",
    device: str = "this device",
) -> MemoryPlan:
    """Choose the settings to train with: the configured ones when they fit, else the cheapest that do.

    estimate: the peak memory of one training step under given settings;
    available: the bytes training may take (free memory plus what the loaded model already holds), None
    when unknown (then nothing is checked);
    fit: False keeps the configured settings and refuses (AdapterflowError) when they don't fit (training.fit_memory
    off, or several processes, which must agree on batch shapes but each measures its own free memory);
    fused_attention: the kernel to switch to from a score-keeping one (None: the model supports none);
    method, device: named in the error.
    """
    configured_estimate = estimate(configured)
    if available is None:
        return MemoryPlan(configured, configured, configured_estimate, None,
                          (f"free memory on {device} is unknown: {configured.describe()} as configured",))
    if not fit:
        check_fits(configured_estimate, available, method, device, suggest_fit_memory=True)
        return MemoryPlan(configured, configured, configured_estimate, available,
                          (f"{configured.describe()}: {_verdict(configured_estimate, available)}, kept as configured",))
    reasons = []
    for settings in candidates(configured, fused_attention):
        result = estimate(settings)
        reasons.append(f"{settings.describe()}: {_verdict(result, available)}")
        if result.total <= available:
            if settings != configured:
                reasons.append(f"chose {settings.describe()}: the same {configured.effective_batch} examples "
                               f"per optimizer step as configured, in less memory")
            return MemoryPlan(settings, configured, result, available, tuple(reasons))
    other_methods = {"full": ", method lora or qlora instead of full fine-tuning",
                     "freeze": ", method lora or qlora instead of full fine-tuning", "qlora": ""}
    raise AdapterflowError(
        f"method {method} is unlikely to fit in memory on {device}: as configured ({configured.describe()}) "
        f"{configured_estimate.describe()}; even with {settings.describe()} {result.describe()}, "
        f"but only {format_bytes(available)} is available",
        hint="try a smaller tokenize.max_length" + other_methods.get(method, ", method qlora (4-bit base weights)")
        + " or a machine with more free memory (training.batch_size can't go lower than the 1 tried)",
    )


def candidates(configured: MemorySettings, fused_attention: str | None) -> Iterator[MemorySettings]:
    """Settings to try, cheapest in throughput first, all with the configured effective batch."""
    yield configured
    attention = configured.attention
    if attention in SCORE_KEEPING_KERNELS and fused_attention is not None:
        attention = fused_attention
        yield replace(configured, attention=attention)
    effective = configured.effective_batch
    smaller = [size for size in range(configured.batch_size - 1, 0, -1) if effective % size == 0]
    for size in smaller:
        yield replace(configured, batch_size=size, gradient_accumulation_steps=effective // size, attention=attention)
    if not configured.gradient_checkpointing:
        for size in [configured.batch_size, *smaller]:
            yield MemorySettings(size, effective // size, attention, gradient_checkpointing=True)


def _verdict(estimate: MemoryEstimate, available: int) -> str:
    relation = "fits in" if estimate.total <= available else "exceeds"
    return f"estimated {format_bytes(estimate.total)} {relation} {format_bytes(available)} available"


def halve_micro_batch(training: TrainingConfig) -> TrainingConfig | None:
    """After running out of memory: half the micro-batch and twice the accumulation steps (the same effective
    batch, rounded up for odd sizes); None when the micro-batch is 1 already."""
    if training.batch_size == 1:
        return None
    smaller = training.batch_size // 2
    accumulation = math.ceil(training.batch_size * training.gradient_accumulation_steps / smaller)
    return training.model_copy(update={"batch_size": smaller, "gradient_accumulation_steps": accumulation})


def out_of_memory_advice(training: TrainingConfig, device: str) -> AdapterflowError:
    """The error for an out-of-memory that fit_memory may not, or can no longer, work around."""
    if not training.fit_memory:
        how = "training.fit_memory: true (halves the micro-batch and goes on from the newest checkpoint), or "
    else:
        how = ""
    return AdapterflowError(
        f"training ran out of memory on {device} with batch_size {training.batch_size} x "
        f"{training.gradient_accumulation_steps} accumulation steps"
        + (" (the smallest micro-batch)" if training.batch_size == 1 else ""),
        hint=f"try {how}a smaller tokenize.max_length or tokenize.max_length_limit, "
             "training.gradient_checkpointing: true, method qlora, or a GPU with more memory",
    )
