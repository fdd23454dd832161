"""Which device and numeric precision a run uses."""

from __future__ import annotations

import contextlib
import importlib.util
from collections.abc import Iterator
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import torch

from adapterflow.core.errors import AdapterflowError


def select_device(preference: str) -> torch.device:
    """auto: CUDA when available, else CPU; an explicit cuda without a GPU is an error."""
    if preference == "cuda" and not torch.cuda.is_available():
        raise AdapterflowError(
            "execution.device is cuda but no CUDA device is visible", hint="use device: auto or cpu on this machine"
        )
    if preference in ("cuda", "auto") and torch.cuda.is_available():
        return torch.device("cuda")
    return torch.device("cpu")


@lru_cache(maxsize=1)
def cpu_supports_bf16() -> bool:
    """True on CPUs with native bf16 arithmetic (AVX512-BF16 or AMX), where autocast pays off."""
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


@dataclass(frozen=True)
class DeviceProperties:
    """What precision and kernel choices know of a device: read from torch by `device_properties`, written
    out by hand in tests for GPUs this machine lacks."""

    type: str  # "cuda" or "cpu"
    name: str  # torch.cuda.get_device_name, e.g. "NVIDIA H100 80GB HBM3"; "cpu" on CPU
    capability: tuple[int, int] = (0, 0)  # CUDA compute capability (major, minor)
    total_memory: int = 0  # bytes of GPU memory
    cpu_bf16: bool = False  # a CPU with native bf16 arithmetic


def device_properties(device: torch.device) -> DeviceProperties:
    """The properties of `device`, the one place device choices ask torch about the hardware."""
    if device.type == "cuda":
        gpu = torch.cuda.get_device_properties(device)
        return DeviceProperties("cuda", gpu.name, (gpu.major, gpu.minor), gpu.total_memory)
    return DeviceProperties(device.type, device.type, cpu_bf16=cpu_supports_bf16())


def as_properties(device: torch.device | DeviceProperties) -> DeviceProperties:
    """Properties as given, or read for a torch device."""
    return device if isinstance(device, DeviceProperties) else device_properties(device)


# bf16 tensor cores came with Ampere (8.0). torch.cuda.is_bf16_supported() is True on Volta (7.0) and Turing
# (7.5) as well, where bf16 is emulated and trains far slower than fp16.
BF16_FROM_CAPABILITY = (8, 0)


def select_precision(preference: str, device: torch.device | DeviceProperties) -> str:
    """Resolve `auto` to bf16, fp16 or fp32 for the device; reject what the device can't do. On CUDA bf16 is
    native from compute capability 8.0 on; below it auto is fp16."""
    properties = as_properties(device)
    if properties.type == "cuda":
        native_bf16 = properties.capability >= BF16_FROM_CAPABILITY
        if preference == "auto":
            return "bf16" if native_bf16 else "fp16"
        if preference == "bf16" and not native_bf16:
            major, minor = properties.capability
            raise AdapterflowError(
                f"training.precision bf16 needs a GPU of compute capability 8.0 or newer (Ampere or later: A100, "
                f"A10G, L4, H100, ...); {properties.name} has {major}.{minor}, where bf16 is only emulated, far "
                "slower than fp16",
                hint="use precision: fp16, or auto (fp16 on this GPU)",
            )
        return preference
    if preference == "fp16":
        raise AdapterflowError("training.precision fp16 needs a GPU", hint="use auto, bf16 or fp32 on CPU")
    if preference == "auto":
        return "bf16" if properties.cpu_bf16 else "fp32"
    return preference


def select_device_and_precision(device: str, precision: str) -> tuple[torch.device, str]:
    """The device (execution.device) and numeric precision (training.precision) a stage computes with; the
    precision is resolved for the device chosen."""
    chosen = select_device(device)
    return chosen, select_precision(precision, chosen)


@contextlib.contextmanager
def autocast(device: torch.device, precision: str) -> Iterator[None]:
    """Mixed-precision autocast for bf16/fp16, a no-op for fp32."""
    if precision == "fp32":
        yield
        return
    dtype = torch.bfloat16 if precision == "bf16" else torch.float16
    with torch.autocast(device.type, dtype=dtype):
        yield


# benchmarks/attention.py (RESULTS.md, "Attention kernels by row length"), LoRA steps of SmolLM2-135M on packed
# CPU rows, CPU time: eager was faster at 128 and 512 tokens a row (sdpa 0.85x and 0.91x), sdpa at 2,048 (1.65x,
# and 4.5 GB against eager's 10.3 GB: eager keeps heads x row x row score matrices). Per-token times interpolated
# linearly cross near 700 tokens; the boundary (not itself measured) sits past that, leaving a margin for the noise.
CPU_SDPA_FROM_ROW_LENGTH = 1024


# Flex attention compiles through Triton; below compute capability 8.0 torch's flex backward falls back to its
# smallest "baseline" tiles (torch/_inductor/template_heuristics/triton.py), so sdpa stays the choice there.
FLEX_FROM_CAPABILITY = (8, 0)


@lru_cache(maxsize=1)
def flex_attention_compiles() -> bool:
    """True where this torch has flex attention (2.5 on) and Triton, which compiles it for CUDA."""
    return all(importlib.util.find_spec(name) is not None for name in ("triton", "torch.nn.attention.flex_attention"))


def select_attention(
    preference: str, device: torch.device | DeviceProperties, row_length: int, packed: bool = False,
    flex_supported: bool = False,
) -> str:
    """The attention kernel for training rows of `row_length` tokens (packed rows: the packed length).

    auto on CUDA: flex attention for packed rows, from compute capability 8.0 on, where Triton compiles it and
    the model implements it (`flex_supported`): it skips the blocks the packed examples' mask leaves out, while
    sdpa gets a dense block-diagonal mask, which rules out its flash kernel; sdpa otherwise. On CPU: eager for
    short rows, sdpa from CPU_SDPA_FROM_ROW_LENGTH tokens on (measured, see above).
    """
    if preference == "flash_attention_2" and packed:
        # transformers 5.23 keeps packed examples apart under flash attention only in single-row batches
        # (modeling_flash_attention_utils._is_packed_sequence); PackedCollator often fills several rows
        raise AdapterflowError(
            "training.attention flash_attention_2 with packing would let the examples packed into a row attend to "
            "each other: transformers separates them for flash attention only when a micro-batch is one row",
            hint="use attention: auto (flex attention for packed rows on CUDA) or sdpa, or packing: false",
        )
    if preference != "auto":
        return preference
    properties = as_properties(device)
    if properties.type == "cuda":
        flex = packed and flex_supported and properties.capability >= FLEX_FROM_CAPABILITY
        return "flex_attention" if flex and flex_attention_compiles() else "sdpa"
    return "sdpa" if row_length >= CPU_SDPA_FROM_ROW_LENGTH else "eager"


# Liger-Kernel's fused linear cross-entropy (training.fused_loss) computes the loss and its gradients a chunk of
# labelled positions at a time and never holds their logits, which cost 12 x vocabulary bytes a token (the fp32
# log-softmax and two gradients of its size, adapterflow.methods.memory). From Llama-2's and Mistral's 32k
# vocabularies on (SmolLM2 49k, Llama-3 128k, Qwen2.5 152k) that is the step's largest tensor and a fifth or more of
# a 1B model's activations: 375 KiB a token at 32k against 1.7 MiB for TinyLlama-1.1B's 22 layers (bf16, sdpa,
# 2,048-token rows; memory.layer_bytes_per_token). Below it (byte-level and small BPE vocabularies) the share is
# small, and the kernel's chunked head matmuls and its host sync per micro-batch would buy little.
FUSED_LOSS_FROM_VOCABULARY = 32_000


@lru_cache(maxsize=1)
def liger_kernel_installed() -> bool:
    """True where the liger-kernel package (the `cuda` extra) is importable."""
    return importlib.util.find_spec("liger_kernel") is not None


def select_fused_loss(
    preference: str, device: torch.device | DeviceProperties, vocab_size: int, liger_installed: bool,
) -> bool:
    """Whether training computes its loss with Liger-Kernel's fused linear cross-entropy (training.fused_loss).

    auto: on CUDA, with liger-kernel installed and a vocabulary of FUSED_LOSS_FROM_VOCABULARY tokens or more;
    off: never; on: always, an error where it can't run (Liger's kernels are Triton, CUDA only). CPU keeps the
    projected loss.
    """
    if preference == "off":
        return False
    cuda = as_properties(device).type == "cuda"
    if preference == "on":
        if not cuda:
            raise AdapterflowError("training.fused_loss on needs a CUDA GPU: Liger-Kernel's fused linear "
                                   "cross-entropy is a Triton kernel", hint="use fused_loss: auto or off here")
        if not liger_installed:
            raise AdapterflowError("training.fused_loss on needs the liger-kernel package",
                                   hint="pip install 'adapterflow[cuda]', or use fused_loss: auto")
        return True
    return cuda and liger_installed and vocab_size >= FUSED_LOSS_FROM_VOCABULARY
