"""Model FLOPs of a training step and GPUs' dense peaks, for model FLOPs utilisation (train/mfu)."""

from __future__ import annotations

import re

import torch

from adapterflow.core.devices import DeviceProperties
from adapterflow.methods.build import logical_numel


def training_flops_per_token(weights: int, trainable: int, layers: int, attention_width: int, row_tokens: int) -> float:
    """FLOPs to train on one token, in the standard accounting (recomputation under checkpointing not counted).

    weights (parameters that multiply activations): 2 per weight forward and 2 for the activation gradients;
    trainable: 2 more for their weight gradients, which frozen weights skip (LoRA about 4N, full fine-tuning
    6N). Attention scores, per layer, over a row of `row_tokens`: QK^T and scores x V, 4 x row x width forward
    (width: heads x head dim, the whole row as eager and sdpa compute it), x 3 with their backward (no weights
    to freeze there).
    """
    return 4.0 * weights + 2.0 * trainable + 3 * 4.0 * layers * attention_width * row_tokens


def model_flops_per_token(model: torch.nn.Module, row_tokens: int) -> float:
    """`training_flops_per_token` of `model` (with or without PEFT) on rows of `row_tokens` tokens."""
    parameters = list(model.parameters())  # a tied parameter once
    embedding = model.get_input_embeddings().weight
    head = model.get_output_embeddings()
    # the input embedding is a lookup, no multiplication; tied to the output head it is the head's weight
    lookup = 0 if getattr(head, "weight", None) is embedding else embedding.numel()
    weights = sum(logical_numel(parameter) for parameter in parameters) - lookup
    trainable = sum(p.numel() for p in parameters if p.requires_grad) - (lookup if embedding.requires_grad else 0)
    config = model.config.get_text_config()
    heads = config.num_attention_heads
    width = heads * (getattr(config, "head_dim", None) or config.hidden_size // heads)
    return training_flops_per_token(weights, trainable, config.num_hidden_layers, width, row_tokens)


# Dense (not 2:4-sparse) tensor-core peaks in FLOP/s from NVIDIA's data sheets: bf16, or fp16 on Volta and Turing,
# which lack bf16, with fp32 accumulation. Keyed by torch.cuda.get_device_name: exact models, since "L4" is not
# "L40S" and an H100 PCIe is not an H100 SXM.
PEAK_FLOPS_BY_GPU = {
    "NVIDIA H100 80GB HBM3": 989e12,  # H100 SXM
    "NVIDIA H100 PCIe": 756e12,
    "NVIDIA H100 NVL": 835e12,
    "NVIDIA H200": 989e12,
    "NVIDIA H200 NVL": 835e12,
    "NVIDIA A100-SXM4-80GB": 312e12,
    "NVIDIA A100-SXM4-40GB": 312e12,
    "NVIDIA A100 80GB PCIe": 312e12,
    "NVIDIA A100-PCIE-40GB": 312e12,
    "NVIDIA A10": 125e12,
    "NVIDIA A10G": 125e12,  # AWS's variant of the A10, without a data sheet of its own: the A10's figure
    "NVIDIA L40S": 362e12,
    "NVIDIA L40": 181e12,
    "NVIDIA L4": 121e12,
    "NVIDIA GeForce RTX 4090": 165e12,
    "NVIDIA GeForce RTX 3090": 71e12,
    "Tesla V100-SXM2-16GB": 125e12,
    "Tesla V100-SXM2-32GB": 125e12,
    "Tesla V100-PCIE-16GB": 112e12,
    "Tesla V100-PCIE-32GB": 112e12,
    "Tesla V100S-PCIE-32GB": 130e12,
    "Tesla T4": 65e12,
}


def normalised_gpu_name(name: str) -> str:
    """Lower case, punctuation as spaces, the vendor prefix dropped: "NVIDIA A100-SXM4-80GB" -> "a100 sxm4 80gb"."""
    words = re.sub(r"[^a-z0-9]+", " ", name.lower()).split()
    return " ".join(words[1:] if words[:1] in (["nvidia"], ["tesla"]) else words)


PEAK_FLOPS = {normalised_gpu_name(name): flops for name, flops in PEAK_FLOPS_BY_GPU.items()}


def peak_flops(device: DeviceProperties) -> float | None:
    """The GPU's dense 16-bit peak when its exact model is known; None on CPU and unknown GPUs (then no MFU)."""
    if device.type != "cuda":
        return None
    return PEAK_FLOPS.get(normalised_gpu_name(device.name))
