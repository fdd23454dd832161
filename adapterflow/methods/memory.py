"""Pre-flight estimate of training memory per method: weights, gradients, optimizer state and activations.

Printed before training and logged as metrics, so that a run that cannot fit fails in seconds with advice
instead of minutes later with an out-of-memory error. Estimates, not measurements: within a small factor.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from adapterflow.errors import AdapterflowError

MIB = 2**20
GIB = 2**30
DEFAULT_ATTENTION_SPAN = 2048  # when the config names no maximum number of positions

# Bytes per activation element by training precision; bf16/fp16 are what the per-layer formula assumes.
ACTIVATION_BYTES = {"bf16": 2, "fp16": 2, "fp32": 4}


@dataclass(frozen=True)
class MemoryEstimate:
    """Bytes one training step needs at its peak, by what holds them."""

    weights: int  # every parameter at its storage size (quantised weights as stored, packed)
    gradients: int  # trainable parameters at their dtype's size
    optimizer: int  # optimizer state of the trainable parameters
    activations: int  # what the forward pass keeps for the backward pass, logits included

    @property
    def total(self) -> int:
        return self.weights + self.gradients + self.optimizer + self.activations

    def as_metrics(self) -> dict[str, float]:
        """The estimate in MiB under `memory/estimate_*` names."""
        parts = {"weights": self.weights, "gradients": self.gradients, "optimizer": self.optimizer,
                 "activations": self.activations, "total": self.total}
        return {f"memory/estimate_{name}_mb": value / MIB for name, value in parts.items()}

    def describe(self) -> str:
        """One line for people, e.g. "estimated peak 1.23 GiB: weights 512 MiB, gradients 3.0 MiB, ..."."""
        return (f"estimated peak {format_bytes(self.total)}: weights {format_bytes(self.weights)}, "
                f"gradients {format_bytes(self.gradients)}, optimizer {format_bytes(self.optimizer)}, "
                f"activations {format_bytes(self.activations)}")


def format_bytes(count: int) -> str:
    """Bytes in the largest binary unit below them: two decimals for GiB, one below 10 of smaller units."""
    if count >= GIB:
        return f"{count / GIB:.2f} GiB"
    for unit, size in (("MiB", MIB), ("KiB", 2**10)):
        if count >= size:
            value = count / size
            return f"{value:.1f} {unit}" if value < 10 else f"{value:.0f} {unit}"
    return f"{count} B"


def optimizer_bytes_per_parameter(optimizer: str) -> int:
    """Bytes of optimizer state per trainable parameter, for transformers' `optim` names.

    AdamW keeps two fp32 moments (8 bytes); 8-bit variants (adamw_8bit, adamw_bnb_8bit, paged_adamw_8bit)
    quantise both to a byte each; Lion keeps one moment; plain SGD (no momentum in transformers) none;
    Adafactor factors its second moment into row and column vectors: 4 bytes is a deliberate upper bound.
    Anything else is assumed to be AdamW-like.
    """
    name = optimizer.lower()
    if name == "sgd":
        return 0
    if "8bit" in name:
        return 1 if "lion" in name else 2
    if "lion" in name or "adafactor" in name:
        return 4
    return 8


def estimate_memory(
    model: torch.nn.Module,
    *,
    tokens_per_micro_batch: int,
    precision: str,
    gradient_checkpointing: bool,
    optimizer: str,
    full_backward: bool,
    sequence_length: int | None = None,
    attention_scores: bool = True,
) -> MemoryEstimate:
    """Estimate one training step's peak memory for `model` as it will train (trainable parameters set).

    tokens_per_micro_batch: tokens in one forward pass (batch size times row length);
    sequence_length: the length of one row, which attention spans (default: the whole micro-batch);
    attention_scores: whether the attention kernel keeps its score matrices (eager does; sdpa and flash
    attention recompute them, so the 5 * heads * span term is left out);
    precision: the resolved training precision, bf16, fp16 or fp32;
    optimizer: a transformers `optim` name (see optimizer_bytes_per_parameter);
    full_backward: whether the backward pass reaches the input embeddings (every trainable method whose
    parameters sit in every layer, prompt learning, or inputs made to require grad for gradient checkpointing).
    When False, autograd keeps nothing for the layers below the lowest one with a trainable parameter
    (freeze tuning of the top layers, a head-only fine-tune), so only the layers from there up are counted.

    Activations follow Korthikanti et al. 2022 ("Reducing Activation Recomputation in Large Transformer
    Models"): tokens * hidden * (34 + 5 * heads * span / hidden) bytes per layer at 16 bit, twice that in fp32,
    with span = min(sequence_length, the config's maximum positions or 2048). With gradient
    checkpointing only each layer's input is kept, plus one layer's full activations while it is recomputed.
    The logits add tokens * vocab_size * 4 bytes (fp32 softmax; a classifier's, one row each, are left out).
    A model without a transformer config
    (hidden_size, num_hidden_layers, num_attention_heads) is counted without activations.
    """
    if precision not in ACTIVATION_BYTES:
        raise ValueError(f"precision must be one of {sorted(ACTIVATION_BYTES)} (resolve auto first), got {precision!r}")
    parameters = list(model.parameters())  # shared (tied) parameters appear once
    trainable = [parameter for parameter in parameters if parameter.requires_grad]
    return MemoryEstimate(
        weights=sum(parameter.numel() * parameter.element_size() for parameter in parameters),
        gradients=sum(parameter.numel() * parameter.element_size() for parameter in trainable),
        optimizer=sum(parameter.numel() for parameter in trainable) * optimizer_bytes_per_parameter(optimizer),
        activations=_activation_bytes(model, tokens_per_micro_batch, sequence_length or tokens_per_micro_batch,
                                      precision, gradient_checkpointing, full_backward, attention_scores),
    )


def _text_config(model: torch.nn.Module) -> object | None:
    """The language model's config: the text part of multimodal configs (peft models forward `config`)."""
    config = getattr(model, "config", None)
    return config.get_text_config() if hasattr(config, "get_text_config") else config


def _backpropagated_layers(model: torch.nn.Module, layers: int, full_backward: bool) -> int:
    """How many transformer layers autograd keeps activations for."""
    if full_backward:
        return layers
    # The decoder (or encoder) stack: the first module list as long as the config's layer count.
    stack = next((module for module in model.modules()
                  if isinstance(module, torch.nn.ModuleList) and len(module) == layers), None)
    if stack is None:
        return layers  # can't tell which layers train: count them all rather than underestimate
    lowest = next((index for index, layer in enumerate(stack)
                   if any(parameter.requires_grad for parameter in layer.parameters())), layers)
    return layers - lowest


def _activation_bytes(
    model: torch.nn.Module, tokens: int, sequence_length: int, precision: str, gradient_checkpointing: bool,
    full_backward: bool, attention_scores: bool,
) -> int:
    config = _text_config(model)
    hidden = getattr(config, "hidden_size", None)
    layers = getattr(config, "num_hidden_layers", None)
    heads = getattr(config, "num_attention_heads", None)
    if not (hidden and layers and heads):
        return 0
    span = min(sequence_length, getattr(config, "max_position_embeddings", None) or DEFAULT_ATTENTION_SPAN)
    scale = ACTIVATION_BYTES[precision] // 2  # the formula's bytes are at 16 bit
    per_layer = tokens * (34 * hidden + (5 * heads * span if attention_scores else 0)) * scale
    counted = _backpropagated_layers(model, layers, full_backward)
    if gradient_checkpointing:
        kept = counted * tokens * hidden * ACTIVATION_BYTES[precision] + (per_layer if counted else 0)
    else:
        kept = counted * per_layer
    classifier = "ForSequenceClassification" in type(model).__name__  # PEFT's wrapper is named alike
    logits = 0 if classifier else tokens * (getattr(config, "vocab_size", None) or 0) * 4
    return kept + logits


def available_memory(device: torch.device) -> int | None:
    """Free bytes on the device now: CUDA's free memory, or MemAvailable on CPU; None when unknown."""
    if device.type == "cuda":
        return torch.cuda.mem_get_info(device)[0]
    if device.type != "cpu":
        return None
    try:
        lines = Path("/proc/meminfo").read_text().splitlines()
    except OSError:
        return None
    for line in lines:
        if line.startswith("MemAvailable:"):
            return int(line.split()[1]) * 1024  # reported in kB
    return None


def check_fits(estimate: MemoryEstimate, available: int | None, method: str, device: torch.device) -> None:
    """Fail before training when the estimate exceeds the available memory; no check when that is unknown.

    `available` is what training may still take on the device. available_memory() measures the memory free
    now: if the model is already loaded there, add estimate.weights to it, as the weights are in the estimate.
    """
    if available is None or estimate.total <= available:
        return
    remedies = ["a smaller training.batch_size or tokenize.max_length", "training.gradient_checkpointing: true"]
    if method in ("full", "freeze"):
        remedies.append("method lora or qlora instead of full fine-tuning")
    elif method != "qlora":
        remedies.append("method qlora (4-bit base weights)")
    raise AdapterflowError(
        f"method {method} is unlikely to fit in memory on {device}: {estimate.describe()}, "
        f"but only {format_bytes(available)} is available",
        hint="try " + ", ".join(remedies[:-1]) + " or " + remedies[-1],
    )
