"""The fused loss (training.fused_loss): the same labelled positions, targets and sum as the projected loss, chosen
only where it can run, and CPU training keeps the projected loss."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from transformers import LlamaConfig, LlamaForCausalLM

from adapterflow.core import devices
from adapterflow.core.devices import DeviceProperties
from adapterflow.core.errors import AdapterflowError
from adapterflow.tokenization.packing import PackedCollator, next_token_loss
from adapterflow.training import fused_loss, hf_trainer
from adapterflow.training.fused_loss import choose_fused_loss, fusable_head, fused_next_token_loss
from schemas.training import TrainingConfig

H100 = DeviceProperties("cuda", "NVIDIA H100 80GB HBM3", (9, 0), 80 * 2**30)


def reference_kernel(weight: torch.Tensor, hidden: torch.Tensor, targets: torch.Tensor,
                     bias: torch.Tensor | None) -> torch.Tensor:
    """What Liger's kernel computes, unfused: summed cross-entropy of the fp32 logits hidden @ weight.T."""
    return torch.nn.functional.cross_entropy(torch.nn.functional.linear(hidden, weight, bias).float(), targets,
                                             reduction="sum")


def tiny_llama(**overrides: object) -> LlamaForCausalLM:
    torch.manual_seed(0)
    settings = dict(vocab_size=300, hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
                    num_key_value_heads=2, tie_word_embeddings=True, attn_implementation="sdpa")
    return LlamaForCausalLM(LlamaConfig(**(settings | overrides)))


def packed_batch() -> dict[str, torch.Tensor]:
    rng = np.random.default_rng(0)
    examples = []
    for length in (5, 17, 9, 30, 12):
        ids = rng.integers(5, 300, length)
        labels = ids.copy()
        labels[: length // 3] = -100  # a prompt without labels
        examples.append({"input_ids": ids, "labels": labels})
    return PackedCollator(pad_token_id=0, row_tokens=32)(examples)  # several rows with padded tails


def loss_and_gradients(model: torch.nn.Module, loss_fn, batch: dict,  # noqa: ANN001
                       precision: str) -> tuple[float, int, list]:
    model.zero_grad(set_to_none=True)
    with devices.autocast(torch.device("cpu"), precision):
        loss, count = loss_fn(model, batch, reduction="sum")
    loss.backward()
    return loss.item(), count, [p.grad.clone() for p in model.parameters() if p.requires_grad]


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_the_fused_path_gives_the_projected_loss_and_gradients_of_a_lora_model(precision: str) -> None:
    from peft import LoraConfig, get_peft_model

    model = get_peft_model(tiny_llama(), LoraConfig(r=4, target_modules="all-linear", init_lora_weights=False))
    batch = packed_batch()
    assert batch["input_ids"].shape[0] > 1
    projected = loss_and_gradients(model, next_token_loss, batch, precision)
    fused = loss_and_gradients(model, lambda m, b, reduction: fused_next_token_loss(m, b, reduction, reference_kernel),
                               batch, precision)
    assert fused[1] == projected[1] > 0  # the same labelled positions
    assert fused[0] == pytest.approx(projected[0], rel=1e-6)
    for ours, theirs in zip(fused[2], projected[2], strict=True):
        torch.testing.assert_close(ours, theirs, rtol=1e-5, atol=1e-7)
    with devices.autocast(torch.device("cpu"), precision):
        mean, count = fused_next_token_loss(model, batch, kernel=reference_kernel)
    assert float(mean) == pytest.approx(projected[0] / count, rel=1e-6)


def test_fused_loss_is_chosen_only_where_the_loss_is_projected_on_a_plain_head(monkeypatch: pytest.MonkeyPatch) -> None:
    from peft import LoraConfig, get_peft_model

    monkeypatch.setattr(fused_loss, "liger_kernel_installed", lambda: True)
    monkeypatch.setattr(devices, "FUSED_LOSS_FROM_VOCABULARY", 300)
    auto, on = TrainingConfig(), TrainingConfig(fused_loss="on")
    plain = tiny_llama()
    assert fusable_head(plain) is plain.lm_head
    assert choose_fused_loss(auto, H100, plain, projected=True)
    assert not choose_fused_loss(on, H100, plain, projected=False)  # classifiers and prompt learning keep their loss
    assert not choose_fused_loss(auto, H100, tiny_llama(vocab_size=299), projected=True)  # below the threshold
    adapted_head = get_peft_model(tiny_llama(), LoraConfig(r=4, target_modules=["q_proj", "lm_head"]))
    capped = tiny_llama()
    capped.config.final_logit_softcapping = 30.0
    fsdp = TrainingConfig(fused_loss="on", distributed={"num_processes": 2, "strategy": "fsdp"})
    fsdp_auto = fsdp.model_copy(update={"fused_loss": "auto"})
    for config, model in ((auto, adapted_head), (auto, capped), (fsdp_auto, plain)):
        assert not choose_fused_loss(config, H100, model, projected=True)
    for config, model, why in ((on, adapted_head, "adapted"), (on, capped, "soft-capped"), (fsdp, plain, "sharded")):
        with pytest.raises(AdapterflowError, match=why):
            choose_fused_loss(config, H100, model, projected=True)


def test_cpu_training_runs_the_projected_loss(monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
                                              tiny_model_dir: Path) -> None:
    from adapterflow.training.trainer import train_adapter
    from schemas.method import LoraMethod
    from tests.tasks.helpers import tokenized_questions

    # everything auto needs on CUDA is here: liger-kernel "installed", the tiny vocabulary above the threshold
    monkeypatch.setattr(fused_loss, "liger_kernel_installed", lambda: True)
    monkeypatch.setattr(devices, "FUSED_LOSS_FROM_VOCABULARY", 1)
    calls = {"projected": 0}

    def projected(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202
        calls["projected"] += 1
        return next_token_loss(*args, **kwargs)

    def fused(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202
        raise AssertionError("the fused loss ran on CPU")

    monkeypatch.setattr(hf_trainer, "next_token_loss", projected)
    monkeypatch.setattr(hf_trainer, "fused_next_token_loss", fused)
    _, base, tokenized = tokenized_questions(tmp_path, tiny_model_dir, rows=12, eval_size=0.2)
    config = TrainingConfig(max_steps=2, batch_size=4, logging_steps=1, precision="fp32", fused_loss="auto")
    train_adapter(Path(tokenized.uri), base, LoraMethod(type="lora", r=4), config, torch.device("cpu"), "fp32",
                  tmp_path / "out")
    assert calls["projected"] == 2
    with pytest.raises(AdapterflowError, match="needs a CUDA GPU"):  # and on CPU, on is refused
        train_adapter(Path(tokenized.uri), base, LoraMethod(type="lora", r=4), config.model_copy(
            update={"fused_loss": "on"}), torch.device("cpu"), "fp32", tmp_path / "on")
