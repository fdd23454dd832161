"""Frozen weights in the compute dtype, trained parameters in fp32: the decision, the built model, its memory."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from adapterflow.methods.build import ModelSpec, base_load_options, build_trainable, spec_for
from adapterflow.methods.dtypes import CPU_FROZEN_IN_COMPUTE_DTYPE, frozen_dtype
from adapterflow.methods.memory import estimate_memory
from tests.methods.conftest import method_of

CPU = torch.device("cpu")
LORA = {"type": "lora", "r": 2}
PROMPT = {"type": "prompt", "init": "random", "num_virtual_tokens": 4}
FROZEN_BASE = [LORA, {"type": "ia3"}, PROMPT, {"type": "prefix", "num_virtual_tokens": 4},
               {"type": "ptuning", "num_virtual_tokens": 4}, {"type": "adalora", "init_r": 4, "target_r": 2},
               {"type": "bottleneck"}]
BASE_TRAINING = [{"type": "full"}, {"type": "freeze", "trainable_layers": 1}, {"type": "bitfit"}]


@pytest.mark.parametrize("options", FROZEN_BASE, ids=lambda o: o["type"])
@pytest.mark.parametrize(("precision", "dtype"), [("bf16", "bfloat16"), ("fp16", "float16"), ("fp32", "float32")])
def test_frozen_base_methods_load_in_the_compute_dtype_on_cuda(options: dict, precision: str, dtype: str) -> None:
    assert frozen_dtype(method_of(options), precision, "cuda") == dtype


@pytest.mark.parametrize("options", BASE_TRAINING, ids=lambda o: o["type"])
@pytest.mark.parametrize("precision", ["bf16", "fp16", "fp32"])
def test_methods_that_train_base_weights_keep_fp32_master_weights(options: dict, precision: str) -> None:
    assert frozen_dtype(method_of(options), precision, "cuda") == "float32"


def test_qlora_quantises_in_the_compute_dtype_and_keeps_the_rest_in_it() -> None:
    spec = spec_for(method_of({"type": "qlora"}), "sft", [], 0, "bf16", device_type="cuda")
    assert spec.dtype == "bfloat16" and spec.precision == "bf16"
    assert spec.quantization == {"bits": 4, "quant_type": "nf4", "double_quant": True, "compute_dtype": "bfloat16"}


def test_an_explicit_base_dtype_wins_and_cpus_follow_the_measurement() -> None:
    lora = method_of(LORA)
    assert frozen_dtype(lora, "bf16", "cuda", "float32") == "float32"
    assert frozen_dtype(method_of({"type": "full"}), "bf16", "cuda", "bfloat16") == "bfloat16"
    assert frozen_dtype(lora, "bf16", "cpu") == ("bfloat16" if CPU_FROZEN_IN_COMPUTE_DTYPE else "float32")
    assert frozen_dtype(lora, "fp32", "cpu") == "float32"


@pytest.mark.parametrize(("spec", "dtype", "bits"), [
    (ModelSpec(dtype="bfloat16"), torch.bfloat16, None),
    (ModelSpec(), torch.float32, None),
    (spec_for(method_of({"type": "qlora"}), "sft", [], 0, "bf16", device_type="cuda"), torch.bfloat16, 4),
    (spec_for(method_of({"type": "qlora", "bits": 8}), "sft", [], 0, "fp16", device_type="cuda"), torch.float16, 8),
])
def test_the_base_loads_as_the_spec_says(spec: ModelSpec, dtype: torch.dtype, bits: int | None) -> None:
    options = base_load_options(spec, CPU)
    assert options["dtype"] == dtype
    quantization = options.get("quantization_config")
    assert (quantization and (4 if quantization.load_in_4bit else 8 if quantization.load_in_8bit else None)) == bits
    if bits == 4:
        assert quantization.bnb_4bit_compute_dtype == torch.bfloat16


def parameter_dtypes(model: torch.nn.Module) -> tuple[set[torch.dtype], set[torch.dtype]]:
    frozen = {p.dtype for p in model.parameters() if not p.requires_grad}
    trainable = {p.dtype for p in model.parameters() if p.requires_grad}
    return frozen, trainable


@pytest.mark.parametrize(("options", "task"), [
    (LORA, "sft"), ({"type": "ia3"}, "sft"), (PROMPT, "sft"), ({"type": "bottleneck"}, "sft"),
    (LORA, "classification"),
])
def test_built_models_keep_frozen_weights_in_bf16_and_what_trains_in_fp32(
    options: dict, task: str, tiny_model_dir: Path, tiny_classifier_dir: Path,
) -> None:
    method = method_of(options)
    base = tiny_classifier_dir if task == "classification" else tiny_model_dir
    spec = spec_for(method, task, ["a", "b"], 0, "bf16", device_type="cuda")
    frozen, trainable = parameter_dtypes(build_trainable(method, str(base), spec, CPU, total_steps=4))
    assert frozen == {torch.bfloat16} and trainable == {torch.float32}


@pytest.mark.parametrize("options", [{"type": "full"}, {"type": "freeze", "trainable_layers": 1}], ids=lambda o: o["type"])
def test_full_and_freeze_tuning_train_fp32_master_weights(options: dict, tiny_model_dir: Path) -> None:
    method = method_of(options)
    model = build_trainable(method, str(tiny_model_dir), spec_for(method, "sft", [], 0, "bf16", device_type="cuda"),
                            CPU, total_steps=4)
    assert {p.dtype for p in model.parameters()} == {torch.float32}


def test_the_estimate_counts_frozen_weights_at_the_compute_dtypes_bytes(tiny_model_dir: Path) -> None:
    method = method_of(LORA)
    settings = {"tokens_per_micro_batch": 64, "precision": "bf16", "gradient_checkpointing": False,
                "optimizer": "adamw_torch", "full_backward": True}
    in_fp32 = build_trainable(method, str(tiny_model_dir), ModelSpec(), CPU, total_steps=4)
    frozen = sum(p.numel() for p in in_fp32.parameters() if not p.requires_grad)
    trainable = sum(p.numel() for p in in_fp32.parameters() if p.requires_grad)
    in_bf16 = build_trainable(method, str(tiny_model_dir), spec_for(method, "sft", [], 0, "bf16", device_type="cuda"),
                              CPU, total_steps=4)
    estimate = estimate_memory(in_bf16, **settings)
    assert estimate.weights == 2 * frozen + 4 * trainable
    assert estimate.gradients == 4 * trainable
    # no 16-bit copies of weights that are 16-bit already
    assert estimate.activations < estimate_memory(in_fp32, **settings).activations
