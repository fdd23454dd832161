"""Device and precision selection."""

from __future__ import annotations

import pytest
import torch

from adapterflow.core import devices
from adapterflow.core.errors import AdapterflowError


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
    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    crossover = devices.CPU_SDPA_FROM_ROW_LENGTH
    assert devices.select_attention("auto", cpu, crossover - 1) == "eager"
    assert devices.select_attention("auto", cpu, crossover) == "sdpa"
    assert devices.select_attention("auto", cpu, 4 * crossover) == "sdpa"
    assert devices.select_attention("auto", cuda, 64) == "sdpa"
    # an explicit kernel is kept at any length
    assert devices.select_attention("eager", cpu, 4 * crossover) == "eager"
    assert devices.select_attention("sdpa", cpu, 64) == "sdpa"
