"""Which dtype a base model's weights take: a pure decision of the method, the precision and the device.

The anchors (PEFT's `autocast_adapter_dtype`, TRL and axolotl loading with `torch_dtype=bfloat16`) keep weights
that never train in the compute dtype and only the trained parameters in fp32: half the weight memory and no
cast per matmul. Methods that train the base's own weights (full, freeze, BitFit) keep fp32 master weights and
autocast, as mixed-precision full fine-tuning does. Everything that loads a trained model back (evaluation,
the registered pyfunc, export) reads the dtype this chose from the artifact's manifest.
"""

from __future__ import annotations

import torch

from schemas.method import MethodVariant

COMPUTE_DTYPES = {"bf16": "bfloat16", "fp16": "float16", "fp32": "float32"}
PRECISIONS = {dtype: precision for precision, dtype in COMPUTE_DTYPES.items()}
# Families whose base weights all stay frozen: what trains is added beside them (PEFT tuners, bottleneck adapters).
FROZEN_BASE_FAMILIES = ("peft", "bottleneck")
# benchmarks/train_throughput.py --frozen (RESULTS.md, "Frozen weights in fp32 or bf16"): on this project's CPU
# (avx512_bf16), LoRA on SmolLM2-135M under bf16 autocast trained 120 real tokens/s with fp32 frozen weights and
# 3 with bf16 ones (22% less peak memory, the same eval loss): on CPU the frozen weights stay fp32.
CPU_FROZEN_IN_COMPUTE_DTYPE = False


def compute_dtype(precision: str) -> str:
    """The torch dtype name a resolved precision (bf16, fp16, fp32) computes in."""
    return COMPUTE_DTYPES[precision]


def frozen_dtype(method: MethodVariant, precision: str, device_type: str, base_dtype: str = "auto") -> str:
    """The dtype the base's non-quantised weights load in for training `method` at the resolved `precision` on
    a `device_type` ("cuda", "cpu") device; `base_dtype` is base_model.dtype, which wins unless it is auto.

    Frozen-base methods load in the compute dtype (QLoRA's unquantised rest too, as its 4-bit layers compute
    in it); methods that train base weights keep fp32 master weights under autocast.
    """
    if base_dtype != "auto":
        return base_dtype
    if method.family not in FROZEN_BASE_FAMILIES:
        return "float32"
    if device_type == "cpu" and not CPU_FROZEN_IN_COMPUTE_DTYPE:
        return "float32"
    return compute_dtype(precision)


def inference_precision(dtype: str, quantization: dict | None) -> str:
    """The precision a loaded model computes in: its quantised layers' compute dtype, else its weights' dtype.
    Trained parameters stay fp32 on 16-bit weights, so inference autocasts to the weights' dtype, like training."""
    return PRECISIONS[quantization["compute_dtype"] if quantization else dtype]


def keep_trainable_in_float32(model: torch.nn.Module) -> None:
    """Trainable floating-point parameters in fp32 (the optimizer's master copy), whatever the frozen weights
    are in: a classification head or BitFit's biases come in the base's dtype."""
    for parameter in model.parameters():
        if parameter.requires_grad and parameter.is_floating_point() and parameter.dtype != torch.float32:
            parameter.data = parameter.data.float()
