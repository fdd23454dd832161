"""Device and precision selection."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch

from adapterflow.core import devices
from adapterflow.core.devices import DeviceProperties
from adapterflow.core.errors import AdapterflowError

GiB = 2**30
# What torch reports on GPUs this machine lacks: torch.cuda.get_device_name and the compute capability.
GPUS = {
    "H100 SXM": DeviceProperties("cuda", "NVIDIA H100 80GB HBM3", (9, 0), 80 * GiB),
    "H100 PCIe": DeviceProperties("cuda", "NVIDIA H100 PCIe", (9, 0), 80 * GiB),
    "H200": DeviceProperties("cuda", "NVIDIA H200", (9, 0), 141 * GiB),
    "A100": DeviceProperties("cuda", "NVIDIA A100-SXM4-80GB", (8, 0), 80 * GiB),
    "A10G": DeviceProperties("cuda", "NVIDIA A10G", (8, 6), 24 * GiB),
    "L4": DeviceProperties("cuda", "NVIDIA L4", (8, 9), 24 * GiB),
    "L40S": DeviceProperties("cuda", "NVIDIA L40S", (8, 9), 48 * GiB),
    "T4": DeviceProperties("cuda", "Tesla T4", (7, 5), 16 * GiB),
    "V100": DeviceProperties("cuda", "Tesla V100-SXM2-16GB", (7, 0), 16 * GiB),
}


def test_device_properties_are_read_from_torch(monkeypatch: pytest.MonkeyPatch) -> None:
    gpu = SimpleNamespace(name="Tesla T4", major=7, minor=5, total_memory=15 * GiB)
    monkeypatch.setattr(torch.cuda, "get_device_properties", lambda device=None: gpu)
    assert devices.device_properties(torch.device("cuda")) == DeviceProperties("cuda", "Tesla T4", (7, 5), 15 * GiB)
    monkeypatch.setattr(devices, "cpu_supports_bf16", lambda: True)
    assert devices.device_properties(torch.device("cpu")) == DeviceProperties("cpu", "cpu", cpu_bf16=True)


def test_gpu_precision_follows_the_compute_capability(monkeypatch: pytest.MonkeyPatch) -> None:
    # torch says yes on every one of these GPUs, also on Volta and Turing, where bf16 is only emulated
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *args, **kwargs: True)
    chosen = {name: devices.select_precision("auto", gpu) for name, gpu in GPUS.items()}
    assert chosen == {"H100 SXM": "bf16", "H100 PCIe": "bf16", "H200": "bf16", "A100": "bf16", "A10G": "bf16",
                      "L4": "bf16", "L40S": "bf16", "T4": "fp16", "V100": "fp16"}
    assert devices.select_precision("fp16", GPUS["H100 SXM"]) == "fp16"  # an explicit choice is kept
    assert devices.select_precision("bf16", GPUS["L4"]) == "bf16"


@pytest.mark.parametrize("gpu, capability", [("T4", "7.5"), ("V100", "7.0")])
def test_bf16_below_ampere_is_a_clear_error(monkeypatch: pytest.MonkeyPatch, gpu: str, capability: str) -> None:
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *args, **kwargs: True)
    with pytest.raises(AdapterflowError) as raised:
        devices.select_precision("bf16", GPUS[gpu])
    message = str(raised.value)
    assert "compute capability 8.0" in message and GPUS[gpu].name in message and f"has {capability}" in message
    assert "fp16" in raised.value.hint


def test_cpu_precision_follows_hardware(monkeypatch: pytest.MonkeyPatch) -> None:
    cpu = torch.device("cpu")
    monkeypatch.setattr(devices, "cpu_supports_bf16", lambda: True)
    assert devices.select_precision("auto", cpu) == "bf16"
    monkeypatch.setattr(devices, "cpu_supports_bf16", lambda: False)
    assert devices.select_precision("auto", cpu) == "fp32"
    assert devices.select_precision("fp32", cpu) == "fp32"
    with pytest.raises(AdapterflowError, match="fp16 needs a GPU"):
        devices.select_precision("fp16", cpu)


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the error on machines without a GPU")
def test_cuda_without_gpu_is_a_clear_error() -> None:
    with pytest.raises(AdapterflowError, match="no CUDA device"):
        devices.select_device("cuda")
    assert devices.select_device("auto").type == "cpu"


def test_the_precision_is_resolved_for_the_device_chosen(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(devices, "cpu_supports_bf16", lambda: False)
    assert devices.select_device_and_precision("cpu", "auto") == (torch.device("cpu"), "fp32")
    assert devices.select_device_and_precision("cpu", "bf16") == (torch.device("cpu"), "bf16")
    with pytest.raises(AdapterflowError, match="fp16 needs a GPU"):
        devices.select_device_and_precision("cpu", "fp16")
    if not torch.cuda.is_available():
        assert devices.select_device_and_precision("auto", "auto") == (torch.device("cpu"), "fp32")


def test_attention_kernel_follows_the_row_length() -> None:
    cpu, cuda = torch.device("cpu"), GPUS["H100 SXM"]
    crossover = devices.CPU_SDPA_FROM_ROW_LENGTH
    assert devices.select_attention("auto", cpu, crossover - 1) == "eager"
    assert devices.select_attention("auto", cpu, crossover) == "sdpa"
    assert devices.select_attention("auto", cpu, 4 * crossover) == "sdpa"
    assert devices.select_attention("auto", cuda, 64) == "sdpa"
    # an explicit kernel is kept at any length
    assert devices.select_attention("eager", cpu, 4 * crossover) == "eager"
    assert devices.select_attention("sdpa", cpu, 64) == "sdpa"


def test_packed_rows_on_cuda_take_flex_attention(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(devices, "flex_attention_compiles", lambda: True)
    packed = {name: devices.select_attention("auto", gpu, 1024, packed=True, flex_supported=True)
              for name, gpu in GPUS.items()}
    assert packed == {"H100 SXM": "flex_attention", "H100 PCIe": "flex_attention", "H200": "flex_attention",
                      "A100": "flex_attention", "A10G": "flex_attention", "L4": "flex_attention",
                      "L40S": "flex_attention", "T4": "sdpa", "V100": "sdpa"}
    h100 = GPUS["H100 SXM"]
    assert devices.select_attention("auto", h100, 1024, packed=False, flex_supported=True) == "sdpa"
    assert devices.select_attention("auto", h100, 1024, packed=True, flex_supported=False) == "sdpa"  # e.g. GPT-2
    assert devices.select_attention("sdpa", h100, 1024, packed=True, flex_supported=True) == "sdpa"
    # CPU keeps its measured rule, packed or not
    cpu = torch.device("cpu")
    assert devices.select_attention("auto", cpu, 256, packed=True, flex_supported=True) == "eager"
    assert devices.select_attention("auto", cpu, 2048, packed=True, flex_supported=True) == "sdpa"
    monkeypatch.setattr(devices, "flex_attention_compiles", lambda: False)  # no Triton
    assert devices.select_attention("auto", h100, 1024, packed=True, flex_supported=True) == "sdpa"


def test_flash_attention_with_packing_is_refused() -> None:
    h100 = GPUS["H100 SXM"]
    with pytest.raises(AdapterflowError, match="attend to each other") as raised:
        devices.select_attention("flash_attention_2", h100, 1024, packed=True)
    assert "packing: false" in raised.value.hint
    assert devices.select_attention("flash_attention_2", h100, 512, packed=False) == "flash_attention_2"


def test_fused_loss_on_cuda_with_liger_kernel_and_a_large_vocabulary() -> None:
    cpu_bf16 = DeviceProperties("cpu", "cpu", cpu_bf16=True)
    large, small = devices.FUSED_LOSS_FROM_VOCABULARY, devices.FUSED_LOSS_FROM_VOCABULARY - 1
    # auto: every lent GPU with liger-kernel and a large vocabulary; never on CPU, without the package, or small
    chosen = {name: devices.select_fused_loss("auto", gpu, large, liger_installed=True) for name, gpu in GPUS.items()}
    assert all(chosen.values()) and len(chosen) == len(GPUS)
    table = {(device.type, vocab, installed): devices.select_fused_loss("auto", device, vocab, installed)
             for device in (GPUS["H100 SXM"], cpu_bf16) for vocab in (small, large, 151_936)
             for installed in (True, False)}
    assert {key for key, fused in table.items() if fused} == {("cuda", large, True), ("cuda", 151_936, True)}
    assert not devices.select_fused_loss("off", GPUS["H100 SXM"], large, liger_installed=True)
    assert devices.select_fused_loss("on", GPUS["T4"], small, liger_installed=True)  # on: whatever the vocabulary
    with pytest.raises(AdapterflowError, match="needs a CUDA GPU"):
        devices.select_fused_loss("on", cpu_bf16, large, liger_installed=True)
    with pytest.raises(AdapterflowError, match="liger-kernel") as raised:
        devices.select_fused_loss("on", GPUS["A10G"], large, liger_installed=False)
    assert "adapterflow[cuda]" in raised.value.hint
