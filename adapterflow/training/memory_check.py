"""The memory check before training: estimate what training needs, choose settings that fit, apply them."""

from __future__ import annotations

import torch

from adapterflow.core.logs import stage_logger
from adapterflow.methods.memory import CPU_HEAP_RETENTION, MemoryEstimate, available_memory, estimate_memory
from adapterflow.methods.memory_plan import SCORE_KEEPING_KERNELS, MemoryPlan, MemorySettings, plan_memory
from adapterflow.tracking.run import RunTracker
from adapterflow.training.parallel import main_process
from schemas.method import MethodVariant
from schemas.training import TrainingConfig


def preflight(
    model: torch.nn.Module, method: MethodVariant, config: TrainingConfig, precision: str, device: torch.device,
    max_length: int, row_tokens: int, attention: str, tracker: RunTracker | None, fused_loss: bool = False,
) -> MemoryPlan:
    """Estimate the memory training needs and choose settings that fit (training.fit_memory); say and log
    both, and stop now if nothing fits. fused_loss: the loss is fused (training.fused_loss), its logits not held."""

    def estimate(settings: MemorySettings) -> MemoryEstimate:
        return estimate_memory(
            model, tokens_per_micro_batch=settings.batch_size * max_length, sequence_length=row_tokens,
            precision=precision, gradient_checkpointing=settings.gradient_checkpointing, optimizer=config.optimizer,
            full_backward=method.family != "full" or method.type == "full",
            attention_scores=settings.attention in SCORE_KEEPING_KERNELS,
            heap_retention=CPU_HEAP_RETENTION if device.type == "cpu" else 0.0, fused_loss=fused_loss,
        )

    configured = MemorySettings(config.batch_size, config.gradient_accumulation_steps, attention,
                                config.gradient_checkpointing)
    configured_estimate = estimate(configured)
    if main_process():
        fused = ", fused loss (liger-kernel)" if fused_loss else ""
        stage_logger().info("%s on %s%s: %s", method.type, device.type, fused, configured_estimate.describe())
    if tracker is not None:
        tracker.log_metrics(configured_estimate.as_metrics())
    free = available_memory(device)
    plan = plan_memory(
        estimate, configured,
        # the model is loaded already: its weights are in the estimate and no longer in the free memory
        None if free is None else free + configured_estimate.weights,
        # several processes must agree on batch shapes, but each would measure its own free memory
        fit=config.fit_memory and config.distributed.num_processes == 1,
        fused_attention="sdpa" if getattr(model, "_supports_sdpa", False) else None,
        method=method.type, device=device.type,
    )
    if plan.changed and main_process():
        stage_logger().info("memory: %s", "; ".join(plan.reasons))
    if tracker is not None:  # memory/estimate_* end at the estimate of the settings training runs with
        tracker.log_metrics((plan.estimate.as_metrics() if plan.changed else {}) | plan.as_metrics())
        tracker.set_tags(plan.as_tags())
    return plan


def apply_plan(
    model: torch.nn.Module, method: MethodVariant, config: TrainingConfig, settings: MemorySettings,
) -> TrainingConfig:
    """Switch the model to the planned attention kernel and checkpointing; the training config to train with."""
    if model.config._attn_implementation != settings.attention:
        model.set_attn_implementation(settings.attention)
    if settings.gradient_checkpointing and method.family == "peft":
        model.enable_input_require_grads()  # checkpointed layers need an input that requires grad to backpropagate
    return config.model_copy(update={"batch_size": settings.batch_size,
                                     "gradient_accumulation_steps": settings.gradient_accumulation_steps,
                                     "gradient_checkpointing": settings.gradient_checkpointing})
