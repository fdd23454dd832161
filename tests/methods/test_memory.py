"""The pre-flight memory estimate: exact byte counts on tiny random models, and a check against a real step."""

from __future__ import annotations

import pytest
import torch
from transformers import LlamaConfig, LlamaForCausalLM

from adapterflow.errors import AdapterflowError
from adapterflow.methods.memory import (
    MIB,
    MemoryEstimate,
    available_memory,
    check_fits,
    estimate_memory,
    format_bytes,
    optimizer_bytes_per_parameter,
)

VOCAB, HIDDEN, LAYERS, HEADS = 64, 32, 2, 4
# Parameters of the tiny llama below, by hand: embeddings (tied with the head) and the final norm, then per layer
# q and o (32x32), k and v (32x16: 2 kv heads of 8), gate, up and down (32x64) and two norms.
TINY_PARAMETERS = VOCAB * HIDDEN + HIDDEN + LAYERS * (2 * 32 * 32 + 2 * 32 * 16 + 3 * 32 * 64 + 2 * 32)


def tiny_llama(**overrides: object) -> LlamaForCausalLM:
    torch.manual_seed(0)
    settings = dict(vocab_size=VOCAB, hidden_size=HIDDEN, intermediate_size=64, num_hidden_layers=LAYERS,
                    num_attention_heads=HEADS, num_key_value_heads=2, max_position_embeddings=128,
                    tie_word_embeddings=True, attn_implementation="eager")
    return LlamaForCausalLM(LlamaConfig(**(settings | overrides)))


def estimate(model: torch.nn.Module, tokens: int = 16, **options: object) -> MemoryEstimate:
    settings = dict(precision="bf16", gradient_checkpointing=False, optimizer="adamw_torch", full_backward=True)
    return estimate_memory(model, tokens_per_micro_batch=tokens, **(settings | options))


def layer_bytes(tokens: int, span: int) -> int:
    """One layer's activations at 16 bit by the Korthikanti formula, for the tiny llama."""
    return tokens * (34 * HIDDEN + 5 * HEADS * span)


def logits_bytes(tokens: int) -> int:
    return tokens * VOCAB * 4


def freeze_all_but(model: torch.nn.Module, module: torch.nn.Module) -> int:
    """Leave only `module` trainable; returns its parameter count."""
    model.requires_grad_(False)
    module.requires_grad_(True)
    return sum(parameter.numel() for parameter in module.parameters())


def test_weights_count_every_parameter_once_at_its_storage_size() -> None:
    model = tiny_llama()
    assert estimate(model).weights == 4 * TINY_PARAMETERS  # fp32, tied head counted once
    model.to(torch.bfloat16)
    assert estimate(model).weights == 2 * TINY_PARAMETERS
    # Quantised weights count as stored: bitsandbytes keeps 4-bit weights packed two to a uint8.
    model.register_parameter("packed", torch.nn.Parameter(torch.zeros(100, dtype=torch.uint8), requires_grad=False))
    assert estimate(model).weights == 2 * TINY_PARAMETERS + 100


def test_gradients_and_optimizer_state_count_trainable_parameters_only() -> None:
    model = tiny_llama()
    trainable = freeze_all_but(model, model.model.layers[1].self_attn.o_proj)
    assert trainable == 32 * 32
    result = estimate(model)
    assert (result.gradients, result.optimizer) == (4 * trainable, 8 * trainable)
    assert estimate(model, optimizer="adamw_8bit").optimizer == 2 * trainable
    assert estimate(model, optimizer="sgd").optimizer == 0
    model.model.layers[1].self_attn.o_proj.to(torch.bfloat16)  # gradients take the parameter's dtype
    assert estimate(model).gradients == 2 * trainable
    assert estimate(model).weights == 4 * TINY_PARAMETERS - 2 * trainable


@pytest.mark.parametrize(
    ("optimizer", "bytes_per_parameter"),
    [("adamw_torch", 8), ("adamw_torch_fused", 8), ("adamw_8bit", 2), ("adamw_bnb_8bit", 2), ("paged_adamw_8bit", 2),
     ("paged_adamw_32bit", 8), ("adafactor", 4), ("lion_8bit", 1), ("sgd", 0)],
)
def test_optimizer_state_per_parameter(optimizer: str, bytes_per_parameter: int) -> None:
    assert optimizer_bytes_per_parameter(optimizer) == bytes_per_parameter


def test_activations_follow_the_per_layer_formula_plus_logits() -> None:
    model = tiny_llama()
    bf16 = estimate(model, tokens=16).activations
    assert bf16 == LAYERS * layer_bytes(16, span=16) + logits_bytes(16)
    # fp32 doubles the layers' activations; the logits are fp32 either way.
    fp32 = estimate(model, tokens=16, precision="fp32").activations
    assert fp32 - logits_bytes(16) == 2 * (bf16 - logits_bytes(16))
    # The attention span stops at the model's maximum positions (128) however many tokens a micro-batch holds.
    assert estimate(model, tokens=1024).activations == LAYERS * layer_bytes(1024, span=128) + logits_bytes(1024)
    # Rows of a batch attend only within themselves: 16 rows of 32 tokens span 32.
    rows = estimate(model, tokens=512, sequence_length=32).activations
    assert rows == LAYERS * layer_bytes(512, span=32) + logits_bytes(512)


def test_gradient_checkpointing_keeps_layer_inputs_and_one_layer() -> None:
    model = tiny_llama(num_hidden_layers=8)
    plain = estimate(model, tokens=256).activations
    checkpointed = estimate(model, tokens=256, gradient_checkpointing=True).activations
    assert checkpointed == 8 * 256 * HIDDEN * 2 + layer_bytes(256, span=128) + logits_bytes(256)
    assert checkpointed < plain / 3


def test_without_full_backward_only_layers_from_the_lowest_trainable_one_count() -> None:
    model = tiny_llama()
    freeze_all_but(model, model.model.layers[1])  # freeze tuning of the top layer
    assert estimate(model, full_backward=False).activations == layer_bytes(16, span=16) + logits_bytes(16)
    assert estimate(model, full_backward=True).activations == LAYERS * layer_bytes(16, span=16) + logits_bytes(16)
    freeze_all_but(model, model.model.norm)  # nothing trains inside the layers
    assert estimate(model, full_backward=False).activations == logits_bytes(16)


def test_a_peft_model_is_estimated_through_its_base_config() -> None:
    from peft import LoraConfig, get_peft_model

    model = get_peft_model(tiny_llama(), LoraConfig(r=2, target_modules=["q_proj", "v_proj"]))
    # Per layer: q's A (2x32) and B (32x2), v's A (2x32) and B (16x2).
    lora_parameters = LAYERS * (2 * 32 + 32 * 2 + 2 * 32 + 16 * 2)
    result = estimate(model)
    assert result.weights == 4 * (TINY_PARAMETERS + lora_parameters)
    assert (result.gradients, result.optimizer) == (4 * lora_parameters, 8 * lora_parameters)
    assert result.activations == LAYERS * layer_bytes(16, span=16) + logits_bytes(16)


def test_a_model_without_a_transformer_config_has_no_activation_estimate() -> None:
    result = estimate(torch.nn.Linear(10, 10))
    assert (result.weights, result.gradients, result.optimizer, result.activations) == (440, 440, 880, 0)


def test_unresolved_precision_is_rejected() -> None:
    with pytest.raises(ValueError, match="auto"):
        estimate(tiny_llama(), precision="auto")


@pytest.mark.parametrize("top_layer_only", [False, True], ids=["full", "freeze"])
def test_the_estimate_matches_a_real_training_step(top_layer_only: bool) -> None:
    """Tensors autograd keeps, gradients and AdamW state of a real fp32 step, compared with the estimate."""
    model = tiny_llama()
    if top_layer_only:
        freeze_all_but(model, model.model.layers[1])
    tokens = 32
    result = estimate(model, tokens=tokens, precision="fp32", full_backward=not top_layer_only)
    parameter_storages = {parameter.untyped_storage().data_ptr() for parameter in model.parameters()}
    kept: dict[int, int] = {}  # storage -> bytes: a tensor saved by several operations is held once

    def keep(tensor: torch.Tensor) -> torch.Tensor:
        storage = tensor.untyped_storage()
        if storage.data_ptr() not in parameter_storages:
            kept[storage.data_ptr()] = storage.nbytes()
        return tensor

    trainable = [parameter for parameter in model.parameters() if parameter.requires_grad]
    optimizer = torch.optim.AdamW(trainable, lr=1e-3)
    ids = torch.randint(0, VOCAB, (1, tokens), generator=torch.Generator().manual_seed(0))
    with torch.autograd.graph.saved_tensors_hooks(keep, lambda tensor: tensor):
        loss = model(input_ids=ids, labels=ids).loss
    loss.backward()
    optimizer.step()

    # The formula's constants are for GPT-style layers with dropout: within a small factor of what llama keeps.
    assert 0.5 * result.activations < sum(kept.values()) < 1.5 * result.activations
    assert result.gradients == sum(parameter.grad.numel() * parameter.grad.element_size() for parameter in trainable)
    moments = sum(state[name].numel() * state[name].element_size()
                  for state in optimizer.state.values() for name in ("exp_avg", "exp_avg_sq"))
    assert result.optimizer == moments


def test_metrics_and_description() -> None:
    result = MemoryEstimate(weights=512 * MIB, gradients=3 * MIB, optimizer=6 * MIB, activations=700 * MIB)
    assert result.total == 1221 * MIB
    assert result.as_metrics() == {
        "memory/estimate_weights_mb": 512.0, "memory/estimate_gradients_mb": 3.0,
        "memory/estimate_optimizer_mb": 6.0, "memory/estimate_activations_mb": 700.0,
        "memory/estimate_total_mb": 1221.0,
    }
    assert result.describe() == (
        "estimated peak 1.19 GiB: weights 512 MiB, gradients 3.0 MiB, optimizer 6.0 MiB, activations 700 MiB"
    )
    assert [format_bytes(count) for count in (0, 1023, 1536, 20 * 2**10)] == ["0 B", "1023 B", "1.5 KiB", "20 KiB"]


def test_check_fits_raises_with_the_breakdown_and_what_helps() -> None:
    result = MemoryEstimate(weights=512 * MIB, gradients=512 * MIB, optimizer=1024 * MIB, activations=512 * MIB)
    cpu = torch.device("cpu")
    with pytest.raises(AdapterflowError) as raised:
        check_fits(result, 2 * 2**30, "full", cpu)
    message, hint = raised.value.message, raised.value.hint
    assert "method full" in message and result.describe() in message and "only 2.00 GiB is available" in message
    assert "training.batch_size" in hint and "tokenize.max_length" in hint
    assert "training.gradient_checkpointing: true" in hint and "lora or qlora" in hint
    with pytest.raises(AdapterflowError) as raised:
        check_fits(result, 2 * 2**30, "qlora", cpu)
    assert "method" not in raised.value.hint  # qlora is already the leanest method
    check_fits(result, result.total, "full", cpu)
    check_fits(result, None, "full", cpu)


def test_available_memory_on_cpu() -> None:
    free = available_memory(torch.device("cpu"))
    assert isinstance(free, int) and free > 2**20
    assert available_memory(torch.device("meta")) is None


def test_fused_attention_keeps_no_score_matrices() -> None:
    model = tiny_llama()
    eager = estimate(model, tokens=64, attention_scores=True).activations
    fused = estimate(model, tokens=64, attention_scores=False).activations
    assert eager - fused == LAYERS * 64 * 5 * HEADS * 64
