"""Pre-flight estimate of training memory per method: weights, gradients, optimizer state and activations.

Printed before training and logged as metrics, so that a run that cannot fit fails in seconds with advice
instead of minutes later with an out-of-memory error. Estimates, not measurements: within a small factor.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from adapterflow.core.errors import AdapterflowError

MIB = 2**20
GIB = 2**30
DEFAULT_ATTENTION_SPAN = 2048  # when the config names no maximum number of positions

# Bytes per element of the activations the matmuls produce, by training precision.
ACTIVATION_BYTES = {"bf16": 2, "fp16": 2, "fp32": 4}
# glibc keeps blocks freed by a step's transient tensors in its heap, between the tensors kept for the backward
# pass: on CPU a step's resident peak is about this share of the activations above the live tensors'
# (26-37% at 2,048-4,096 tokens a micro-batch with SmolLM2, benchmarks/memory.py --live).
CPU_HEAP_RETENTION = 0.3
# Liger-Kernel's fused linear cross-entropy computes the input gradient in its forward pass (one hidden-sized tensor a
# token, kept for the backward pass) and the logits of one chunk of positions at a time, the chunk sized so that its
# logits are no larger than twice the hidden states (liger_kernel/ops/fused_linear_cross_entropy.py, chunk_size)
FUSED_LOSS_HIDDEN_COPIES = 3


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
    heap_retention: float = 0.0,
    fused_loss: bool = False,
) -> MemoryEstimate:
    """Estimate one training step's peak memory for `model` as it will train (trainable parameters set).

    tokens_per_micro_batch: tokens in one forward pass (batch size times row length);
    sequence_length: the length of one row, which attention spans (default: the whole micro-batch);
    attention_scores: whether the attention kernel keeps its score matrices (eager does; sdpa and flash
    attention recompute them);
    precision: the resolved training precision, bf16, fp16 or fp32;
    optimizer: a transformers `optim` name (see optimizer_bytes_per_parameter);
    heap_retention: the allocator's overhead as a share of the activations (CPU_HEAP_RETENTION on CPU);
    fused_loss: the loss is Liger-Kernel's fused linear cross-entropy (training.fused_loss), which holds no logits;
    full_backward: whether the backward pass reaches the input embeddings (every trainable method whose
    parameters sit in every layer, prompt learning, or inputs made to require grad for gradient checkpointing).
    When False, autograd keeps nothing for the layers below the lowest one with a trainable parameter
    (freeze tuning of the top layers, a head-only fine-tune), so only the layers from there up are counted.

    Activations are counted per layer and token for llama-style layers (see layer_bytes_per_token), with
    span = min(sequence_length, tokens, the config's maximum positions or 2048); under 16-bit autocast of fp32
    weights, the 16-bit copies of the weight matrices autograd keeps count too. With gradient checkpointing
    only each layer's input is kept, plus one layer's full activations while it is recomputed. The logits add
    tokens * vocab_size * 12 bytes (the fp32 log-softmax and two gradients of its size as the backward pass
    starts; a classifier's, one row each, are left out); the fused loss holds instead FUSED_LOSS_HIDDEN_COPIES
    hidden-sized tensors a token. Without heap_retention this is the peak of the live
    tensors, within a few percent of real steps (benchmarks/memory.py --live). A model without a
    transformer config (hidden_size, num_hidden_layers, num_attention_heads) is counted without activations.
    """
    if precision not in ACTIVATION_BYTES:
        raise ValueError(f"precision must be one of {sorted(ACTIVATION_BYTES)} (resolve auto first), got {precision!r}")
    parameters = list(model.parameters())  # shared (tied) parameters appear once
    trainable = [parameter for parameter in parameters if parameter.requires_grad]
    return MemoryEstimate(
        weights=sum(parameter.numel() * parameter.element_size() for parameter in parameters),
        gradients=sum(parameter.numel() * parameter.element_size() for parameter in trainable),
        optimizer=sum(parameter.numel() for parameter in trainable) * optimizer_bytes_per_parameter(optimizer),
        activations=round((1 + heap_retention) * _activation_bytes(
            model, tokens_per_micro_batch, sequence_length or tokens_per_micro_batch, precision,
            gradient_checkpointing, full_backward, attention_scores, fused_loss)),
    )


def _text_config(model: torch.nn.Module) -> object | None:
    """The language model's config: the text part of multimodal configs (peft models forward `config`)."""
    config = getattr(model, "config", None)
    return config.get_text_config() if hasattr(config, "get_text_config") else config


def _layer_stack(model: torch.nn.Module, layers: int) -> torch.nn.ModuleList | None:
    """The decoder (or encoder) stack: the first module list as long as the config's layer count."""
    return next((module for module in model.modules()
                 if isinstance(module, torch.nn.ModuleList) and len(module) == layers), None)


def _backpropagated_layers(stack: torch.nn.ModuleList | None, layers: int, full_backward: bool) -> int:
    """How many transformer layers autograd keeps activations for."""
    if full_backward or stack is None:
        return layers  # without a stack we can't tell which layers train: count them all rather than underestimate
    lowest = next((index for index, layer in enumerate(stack)
                   if any(parameter.requires_grad for parameter in layer.parameters())), layers)
    return layers - lowest


def _float32_matrices(modules: list[torch.nn.Module], skip: set[int]) -> int:
    """Elements of the fp32 weight matrices of `modules` (each once), leaving out the storages in `skip`."""
    seen = set(skip)
    total = 0
    for module in modules:
        for parameter in module.parameters():
            pointer = parameter.untyped_storage().data_ptr()
            if parameter.dtype == torch.float32 and parameter.dim() >= 2 and pointer not in seen:
                seen.add(pointer)
                total += parameter.numel()
    return total


def _autocast_weight_copies(model: torch.nn.Module, stack: torch.nn.ModuleList | None, kept_layers: int) -> int:
    """Bytes of the 16-bit copies autocast makes of fp32 weight matrices and autograd keeps for the backward
    pass: those of the `kept_layers` top layers and of everything outside the stack (the output head). An
    input embedding not tied to the head is only indexed, never cast."""
    embeddings = model.get_input_embeddings() if hasattr(model, "get_input_embeddings") else None
    head = model.get_output_embeddings() if hasattr(model, "get_output_embeddings") else None
    skip = set()
    if embeddings is not None and (head is None or head.weight is not embeddings.weight):
        skip.add(embeddings.weight.untyped_storage().data_ptr())
    if stack is None:
        return 2 * _float32_matrices([model], skip)
    skip |= {parameter.untyped_storage().data_ptr() for parameter in stack.parameters()}
    outside = _float32_matrices([model], skip)
    return 2 * (outside + _float32_matrices(list(stack)[len(stack) - kept_layers:], set()))


def layer_bytes_per_token(
    hidden: int, intermediate: int, heads: int, span: int, compute: int, residual: int, attention_scores: bool,
) -> int:
    """Bytes one llama-style layer keeps for the backward pass per token, counted from the tensors autograd
    saves (saved-tensor hooks on SmolLM2-135M with LoRA on every linear layer, benchmarks/memory.py).

    compute: bytes of the matmuls' inputs and outputs (2 under 16-bit autocast or 16-bit weights, 4 in fp32);
    residual: bytes of the residual stream, which the two norms keep (fp32 when the weights are, even under
    autocast). Kept: the two norm inputs; q, k and v by head; the attention output; the normed inputs of the
    attention and MLP projections (one each, or one 16-bit cast per projection when autocast casts fp32 inputs,
    3 + 2); and the gated MLP's four intermediate-sized tensors. Eager attention adds its fp32 softmax (and
    its 16-bit copy); sdpa keeps only its span-wide mask row.
    """
    casts = 3 + 2 if compute < residual else 2
    per_token = 2 * hidden * residual + compute * ((3 + 1 + casts) * hidden + 4 * intermediate)
    if attention_scores:
        return per_token + heads * span * (4 + (2 if compute == 2 else 0))
    return per_token + span * compute


def _activation_bytes(
    model: torch.nn.Module, tokens: int, sequence_length: int, precision: str, gradient_checkpointing: bool,
    full_backward: bool, attention_scores: bool, fused_loss: bool,
) -> int:
    config = _text_config(model)
    hidden = getattr(config, "hidden_size", None)
    layers = getattr(config, "num_hidden_layers", None)
    heads = getattr(config, "num_attention_heads", None)
    if not (hidden and layers and heads):
        return 0
    # a row spans no more than the micro-batch's tokens (packing a single example leaves its row part-empty)
    span = min(sequence_length, tokens, getattr(config, "max_position_embeddings", None) or DEFAULT_ATTENTION_SPAN)
    intermediate = getattr(config, "intermediate_size", None) or 4 * hidden
    compute = ACTIVATION_BYTES[precision]
    embeddings = model.get_input_embeddings() if hasattr(model, "get_input_embeddings") else None
    weights_fp32 = embeddings is not None and embeddings.weight.dtype == torch.float32
    residual = 4 if weights_fp32 else compute
    per_layer = tokens * layer_bytes_per_token(hidden, intermediate, heads, span, compute, residual, attention_scores)
    stack = _layer_stack(model, layers)
    counted = _backpropagated_layers(stack, layers, full_backward)
    # with checkpointing only each layer's input is kept, plus one layer's activations while it is recomputed
    kept_layers = min(counted, 1) if gradient_checkpointing else counted
    kept = kept_layers * per_layer + (counted * tokens * hidden * residual if gradient_checkpointing else 0)
    copies = _autocast_weight_copies(model, stack, kept_layers) if compute < 4 and weights_fp32 else 0
    classifier = "ForSequenceClassification" in type(model).__name__  # PEFT's wrapper is named alike
    # the fp32 log-softmax of the logits, and when the backward pass starts the loss's and the softmax's gradients
    logits = 0 if classifier else tokens * (getattr(config, "vocab_size", None) or 0) * 12
    if fused_loss:
        logits = tokens * hidden * FUSED_LOSS_HIDDEN_COPIES * compute
    return kept + copies + logits


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


def check_fits(
    estimate: MemoryEstimate, available: int | None, method: str, device: torch.device | str,
    suggest_fit_memory: bool = False,
) -> None:
    """Fail before training when the estimate exceeds the available memory; no check when that is unknown.
    suggest_fit_memory: name training.fit_memory among the remedies (settings that fit were not chosen).

    `available` is what training may still take on the device. available_memory() measures the memory free
    now: if the model is already loaded there, add estimate.weights to it, as the weights are in the estimate.
    """
    if available is None or estimate.total <= available:
        return
    fit_memory = ("training.fit_memory: true in a single-process run (it picks a micro-batch, attention kernel and "
                  "checkpointing that fit)")
    remedies = [fit_memory] if suggest_fit_memory else []
    remedies += ["a smaller training.batch_size or tokenize.max_length", "training.gradient_checkpointing: true"]
    if method in ("full", "freeze"):
        remedies.append("method lora or qlora instead of full fine-tuning")
    elif method != "qlora":
        remedies.append("method qlora (4-bit base weights)")
    raise AdapterflowError(
        f"method {method} is unlikely to fit in memory on {device}: {estimate.describe()}, "
        f"but only {format_bytes(available)} is available",
        hint="try " + ", ".join(remedies[:-1]) + " or " + remedies[-1],
    )
