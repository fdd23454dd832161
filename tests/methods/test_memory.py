"""The pre-flight memory estimate: exact byte counts on tiny random models, and a check against a real step."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from transformers import LlamaConfig, LlamaForCausalLM

from adapterflow.core.errors import AdapterflowError
from adapterflow.methods.memory import (
    CPU_HEAP_RETENTION,
    FUSED_LOSS_HIDDEN_COPIES,
    MIB,
    MemoryEstimate,
    available_memory,
    check_fits,
    estimate_memory,
    format_bytes,
    optimizer_bytes_per_parameter,
)
from adapterflow.methods.memory_plan import MemorySettings, plan_memory

VOCAB, HIDDEN, INTERMEDIATE, LAYERS, HEADS = 64, 32, 64, 2, 4
# Parameters of the tiny llama below, by hand: embeddings (tied with the head) and the final norm, then per layer
# q and o (32x32), k and v (32x16: 2 kv heads of 8), gate, up and down (32x64) and two norms.
LAYER_MATRICES = 2 * 32 * 32 + 2 * 32 * 16 + 3 * 32 * 64
TINY_PARAMETERS = VOCAB * HIDDEN + HIDDEN + LAYERS * (LAYER_MATRICES + 2 * 32)


def tiny_llama(**overrides: object) -> LlamaForCausalLM:
    torch.manual_seed(0)
    settings = dict(vocab_size=VOCAB, hidden_size=HIDDEN, intermediate_size=64, num_hidden_layers=LAYERS,
                    num_attention_heads=HEADS, num_key_value_heads=2, max_position_embeddings=128,
                    tie_word_embeddings=True, attn_implementation="eager")
    return LlamaForCausalLM(LlamaConfig(**(settings | overrides)))


def estimate(model: torch.nn.Module, tokens: int = 16, **options: object) -> MemoryEstimate:
    settings = dict(precision="bf16", gradient_checkpointing=False, optimizer="adamw_torch", full_backward=True)
    return estimate_memory(model, tokens_per_micro_batch=tokens, **(settings | options))


def layer_bytes(tokens: int, span: int, precision: str = "bf16", eager: bool = True) -> int:
    """One layer's activations for the tiny llama (fp32 weights), by hand: the fp32 residual stream at both
    norms; q, k, v, the attention output and the normed inputs (one 16-bit cast per projection under autocast,
    5; shared in fp32, 2); the MLP's four intermediate tensors; eager's fp32 softmax (and 16-bit copy) or sdpa's
    mask row."""
    if precision == "fp32":
        per_token = 2 * HIDDEN * 4 + 4 * (6 * HIDDEN + 4 * INTERMEDIATE) + (HEADS * span * 4 if eager else span * 4)
    else:
        per_token = 2 * HIDDEN * 4 + 2 * (9 * HIDDEN + 4 * INTERMEDIATE) + (HEADS * span * 6 if eager else span * 2)
    return tokens * per_token


def copies_bytes(layers: int = LAYERS, extra: int = 0) -> int:
    """The bf16 copies autocast keeps of the fp32 weight matrices of `layers` layers and the (tied) head."""
    return 2 * (layers * LAYER_MATRICES + VOCAB * HIDDEN + extra)


def logits_bytes(tokens: int) -> int:
    return tokens * VOCAB * 12


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


def test_activations_follow_the_per_layer_counts_plus_weight_copies_and_logits() -> None:
    model = tiny_llama()
    bf16 = estimate(model, tokens=16).activations
    assert bf16 == LAYERS * layer_bytes(16, span=16) + copies_bytes() + logits_bytes(16)
    # fp32 keeps no 16-bit copies of the weights
    fp32 = estimate(model, tokens=16, precision="fp32").activations
    assert fp32 == LAYERS * layer_bytes(16, span=16, precision="fp32") + logits_bytes(16)
    # The attention span stops at the model's maximum positions (128) however many tokens a micro-batch holds.
    assert estimate(model, tokens=1024).activations == (
        LAYERS * layer_bytes(1024, span=128) + copies_bytes() + logits_bytes(1024))
    # Rows of a batch attend only within themselves: 16 rows of 32 tokens span 32, and no row is longer than
    # the micro-batch (a packed row of up to 128 tokens holding 64).
    rows = estimate(model, tokens=512, sequence_length=32).activations
    assert rows == LAYERS * layer_bytes(512, span=32) + copies_bytes() + logits_bytes(512)
    short = estimate(model, tokens=64, sequence_length=128).activations
    assert short == LAYERS * layer_bytes(64, span=64) + copies_bytes() + logits_bytes(64)
    # 16-bit weights train without autocast copies, and their residual stream is 16-bit too
    halved = estimate(tiny_llama().to(torch.bfloat16), tokens=16).activations
    assert halved == LAYERS * 16 * (2 * HIDDEN * 2 + 2 * (6 * HIDDEN + 4 * INTERMEDIATE) + HEADS * 16 * 6) + logits_bytes(16)


def test_gradient_checkpointing_keeps_layer_inputs_and_one_layer() -> None:
    model = tiny_llama(num_hidden_layers=8)
    plain = estimate(model, tokens=256).activations
    checkpointed = estimate(model, tokens=256, gradient_checkpointing=True).activations
    # layer inputs in the fp32 residual stream, one layer's activations and weight copies, the head's copy
    assert checkpointed == 8 * 256 * HIDDEN * 4 + layer_bytes(256, span=128) + copies_bytes(1) + logits_bytes(256)
    assert checkpointed < plain / 3


def test_without_full_backward_only_layers_from_the_lowest_trainable_one_count() -> None:
    model = tiny_llama()
    freeze_all_but(model, model.model.layers[1])  # freeze tuning of the top layer
    assert estimate(model, full_backward=False).activations == (
        layer_bytes(16, span=16) + copies_bytes(1) + logits_bytes(16))
    assert estimate(model, full_backward=True).activations == (
        LAYERS * layer_bytes(16, span=16) + copies_bytes() + logits_bytes(16))
    freeze_all_but(model, model.model.norm)  # nothing trains inside the layers
    assert estimate(model, full_backward=False).activations == copies_bytes(0) + logits_bytes(16)


def test_a_peft_model_is_estimated_through_its_base_config() -> None:
    from peft import LoraConfig, get_peft_model

    model = get_peft_model(tiny_llama(), LoraConfig(r=2, target_modules=["q_proj", "v_proj"]))
    # Per layer: q's A (2x32) and B (32x2), v's A (2x32) and B (16x2).
    lora_parameters = LAYERS * (2 * 32 + 32 * 2 + 2 * 32 + 16 * 2)
    result = estimate(model)
    assert result.weights == 4 * (TINY_PARAMETERS + lora_parameters)
    assert (result.gradients, result.optimizer) == (4 * lora_parameters, 8 * lora_parameters)
    assert result.activations == (
        LAYERS * layer_bytes(16, span=16) + copies_bytes(extra=lora_parameters) + logits_bytes(16))


def test_a_model_without_a_transformer_config_has_no_activation_estimate() -> None:
    result = estimate(torch.nn.Linear(10, 10))
    assert (result.weights, result.gradients, result.optimizer, result.activations) == (440, 440, 880, 0)


def test_unresolved_precision_is_rejected() -> None:
    with pytest.raises(ValueError, match="auto"):
        estimate(tiny_llama(), precision="auto")


@pytest.mark.parametrize("top_layer_only", [False, True], ids=["full", "freeze"])
@pytest.mark.parametrize("attention", ["eager", "sdpa"])
@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_the_estimate_matches_a_real_training_step(top_layer_only: bool, attention: str, precision: str) -> None:
    """Tensors autograd keeps, gradients and AdamW state of a real step, compared with the estimate."""
    model = tiny_llama(attn_implementation=attention)
    if top_layer_only:
        freeze_all_but(model, model.model.layers[1])
    tokens = 32
    result = estimate(model, tokens=tokens, precision=precision, full_backward=not top_layer_only,
                      attention_scores=attention == "eager")
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
    with torch.autograd.graph.saved_tensors_hooks(keep, lambda tensor: tensor), \
            torch.autocast("cpu", dtype=torch.bfloat16, enabled=precision == "bf16"):
        loss = model(input_ids=ids, labels=ids).loss
    loss.backward()
    optimizer.step()

    # What autograd keeps; the estimate adds the logits' gradient, which exists only while backward starts.
    assert 0.8 * result.activations < sum(kept.values()) < 1.25 * result.activations
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
    assert eager - fused == LAYERS * 64 * (6 * HEADS * 64 - 2 * 64)  # fp32 softmax and its bf16 copy; sdpa's mask


def test_the_fused_loss_holds_hidden_sized_chunks_instead_of_the_logits() -> None:
    model = tiny_llama()
    for precision, compute in (("bf16", 2), ("fp32", 4)):
        fused = estimate(model, tokens=64, precision=precision, fused_loss=True).activations
        unfused = estimate(model, tokens=64, precision=precision).activations
        assert unfused - fused == logits_bytes(64) - 64 * HIDDEN * FUSED_LOSS_HIDDEN_COPIES * compute > 0


# The memory plan: a pure function of an estimate and the available bytes.

def synthetic(settings: MemorySettings) -> MemoryEstimate:
    """A step's memory that grows with the micro-batch, more with eager attention, less with checkpointing."""
    per_example = (3 if settings.attention == "eager" else 2) * MIB
    if settings.gradient_checkpointing:
        per_example //= 4
    return MemoryEstimate(weights=10 * MIB, gradients=MIB, optimizer=2 * MIB,
                          activations=settings.batch_size * per_example)


def settings(batch_size: int = 8, accumulation: int = 1, attention: str = "eager", checkpointing: bool = False) -> MemorySettings:
    return MemorySettings(batch_size, accumulation, attention, checkpointing)


@pytest.mark.parametrize("configured", [settings(), settings(6, 2), settings(12, 1, "sdpa"), settings(5, 3, "eager", True),
                                        settings(1, 8)], ids=str)
@pytest.mark.parametrize("available_mib", [14, 16, 18, 20, 24, 30, 40, 100])
def test_a_plan_keeps_the_effective_batch_and_fits_or_says_why_not(configured: MemorySettings, available_mib: int) -> None:
    available = available_mib * MIB
    try:
        plan = plan_memory(synthetic, configured, available, method="lora", device="cpu")
    except AdapterflowError as error:
        # nothing fits: not even one example a micro-batch with sdpa and checkpointing
        assert synthetic(settings(1, 1, "sdpa", True)).total > available or (
            configured.gradient_checkpointing is False and synthetic(settings(1, 1, "sdpa", False)).total > available)
        assert format_bytes(available) in error.message and "tokenize.max_length" in error.hint
        return
    assert plan.settings.effective_batch == configured.effective_batch
    assert plan.estimate == synthetic(plan.settings) and plan.estimate.total <= available
    assert plan.changed == (synthetic(configured).total > available)
    if not plan.changed:
        assert plan.settings == configured and len(plan.reasons) == 1
    else:
        # no larger micro-batch with the same kernel and checkpointing would have fitted
        larger = [size for size in range(plan.settings.batch_size + 1, configured.batch_size + 1)
                  if configured.effective_batch % size == 0]
        assert all(synthetic(settings(size, 1, plan.settings.attention, plan.settings.gradient_checkpointing)).total
                   > available for size in larger)
        assert plan.reasons[-1].startswith(f"chose {plan.settings.describe()}")


def test_the_plan_switches_the_attention_kernel_first_then_shrinks_then_checkpoints() -> None:
    configured = settings(8, 2)  # 16 examples per optimizer step; eager: 13 + 24 MiB
    assert plan_memory(synthetic, configured, 40 * MIB).settings == configured
    assert plan_memory(synthetic, configured, 30 * MIB).settings == settings(8, 2, "sdpa")  # 13 + 16 MiB
    assert plan_memory(synthetic, configured, 22 * MIB).settings == settings(4, 4, "sdpa")  # 13 + 8 MiB
    # a model without a fused kernel keeps eager and shrinks further instead
    assert plan_memory(synthetic, configured, 22 * MIB, fused_attention=None).settings == settings(2, 8)
    assert plan_memory(synthetic, configured, 15 * MIB).settings == settings(1, 16, "sdpa")  # 13 + 2 MiB
    # checkpointing only once one example a micro-batch doesn't fit (0.5 MiB an example with it)
    assert plan_memory(synthetic, configured, 13.6 * MIB).settings == settings(1, 16, "sdpa", True)
    plan = plan_memory(synthetic, configured, 14.5 * MIB)
    assert plan.settings == settings(2, 8, "sdpa", True) and plan.reasons[0].startswith(configured.describe())
    assert len(plan.reasons) == 1 + 1 + 3 + 3 + 1  # configured, sdpa, 3 smaller, checkpointing at 8, 4, 2; the choice
    assert plan.as_metrics() == {
        "memory/plan_batch_size": 2.0, "memory/plan_gradient_accumulation_steps": 8.0,
        "memory/plan_gradient_checkpointing": 1.0, "memory/plan_changed": 1.0, "memory/available_mb": 14.5,
    }
    assert plan.as_tags()["adapterflow.memory_plan.attention"] == "sdpa"
    assert "batch_size 8 x 2 accumulation steps, eager attention: estimated 37 MiB exceeds 14 MiB available" in plan.as_tags()[
        "adapterflow.memory_plan"]


def test_micro_batches_divide_the_effective_batch() -> None:
    plan = plan_memory(synthetic, settings(6, 1, "sdpa"), 20 * MIB)  # 6 examples: 3 a micro-batch fit, 5 and 4 don't divide
    assert plan.settings == settings(3, 2, "sdpa")


def test_when_nothing_fits_the_error_names_the_numbers_and_keys() -> None:
    with pytest.raises(AdapterflowError) as raised:
        plan_memory(synthetic, settings(8, 1), 13 * MIB, method="lora", device="cpu")
    message, hint = raised.value.message, raised.value.hint
    assert "method lora is unlikely to fit in memory on cpu" in message
    assert "as configured (batch_size 8 x 1 accumulation step, eager attention) estimated peak 37 MiB" in message
    assert "even with batch_size 1 x 8 accumulation steps, sdpa attention, gradient checkpointing" in message
    assert "only 13 MiB is available" in message
    assert "tokenize.max_length" in hint and "method qlora" in hint and "training.batch_size" in hint


def test_fit_memory_off_refuses_as_before_and_unknown_memory_checks_nothing() -> None:
    configured = settings(8, 1)
    with pytest.raises(AdapterflowError) as raised:
        plan_memory(synthetic, configured, 30 * MIB, fit=False, method="lora", device="cpu")
    assert synthetic(configured).describe() in raised.value.message and "only 30 MiB" in raised.value.message
    assert "training.fit_memory: true" in raised.value.hint and "training.gradient_checkpointing" in raised.value.hint
    assert plan_memory(synthetic, configured, 40 * MIB, fit=False).settings == configured
    unknown = plan_memory(synthetic, configured, None)
    assert (unknown.settings, unknown.available) == (configured, None)
    assert "memory/available_mb" not in unknown.as_metrics()


class RecordingTracker:
    """Keeps what training logs, in place of an MLflow run."""

    def __init__(self) -> None:
        self.metrics: dict[str, float] = {}
        self.tags: dict[str, str] = {}

    def log_metrics(self, metrics: dict[str, float], step: int = 0) -> None:
        self.metrics |= metrics

    def set_tags(self, tags: dict[str, str]) -> None:
        self.tags |= tags


def test_training_that_would_not_fit_trains_with_smaller_micro_batches(
    tmp_path: Path, tiny_model_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from adapterflow.core.home import Home
    from adapterflow.data.splitting import split_rows
    from adapterflow.methods.build import build_trainable, spec_for
    from adapterflow.storage.records import BaseModelRef
    from adapterflow.storage.store import Storage
    from adapterflow.training import memory_check
    from adapterflow.training import trainer as trainer_module
    from schemas.data import LeakageConfig, SplitConfig
    from schemas.method import LoraMethod
    from schemas.tokenize import TokenizeConfig
    from schemas.training import TrainingConfig
    from tasks.tokenize import tokenize_splits
    from tests.tasks.helpers import filtered, questions

    cpu, method = torch.device("cpu"), LoraMethod(type="lora", r=4)
    home = Home(tmp_path / "home")
    base = BaseModelRef(name="tiny", path=str(tiny_model_dir), sha256="x")
    split = split_rows(filtered(tmp_path / "data", questions(24)), SplitConfig(eval_size=0.2, max_eval_rows=None),
                       LeakageConfig(enabled=False), Storage.local(home.cache), 1)
    tokenized = Path(tokenize_splits(split, base, TokenizeConfig(max_length=64), Storage.local(home.cache)).uri)
    config = TrainingConfig(max_steps=2, batch_size=4, gradient_accumulation_steps=2, precision="fp32", attention="eager",
                            optimizer="adamw_torch")
    # A memory budget between one and two examples a micro-batch with sdpa (rows of up to 128 packed tokens)
    model = build_trainable(method, str(tiny_model_dir), spec_for(method, "sft", [], 0, "fp32", 64), cpu, total_steps=2)

    def at(batch_size: int) -> MemoryEstimate:
        return estimate_memory(model, tokens_per_micro_batch=batch_size * 64, sequence_length=128, precision="fp32",
                               gradient_checkpointing=False, optimizer="adamw_torch", full_backward=True,
                               attention_scores=False, heap_retention=CPU_HEAP_RETENTION)

    budget = (at(1).total + at(2).total) // 2
    monkeypatch.setattr(memory_check, "available_memory", lambda device: budget - at(1).weights)
    real_arguments, arguments = trainer_module.training_arguments, []

    def recorded_arguments(*args: object, **kwargs: object) -> object:  # what the Trainer is given
        arguments.append(real_arguments(*args, **kwargs))
        return arguments[-1]

    monkeypatch.setattr(trainer_module, "training_arguments", recorded_arguments)
    tracker = RecordingTracker()
    outcome = trainer_module.train_adapter(tokenized, base, method, config, cpu, "fp32", tmp_path / "out",
                                           tracker=tracker, max_length=64)
    assert (arguments[0].per_device_train_batch_size, arguments[0].gradient_accumulation_steps) == (1, 8)
    assert outcome.metrics["memory/plan_batch_size"] == 1 and outcome.metrics["train/steps"] == 2
    assert tracker.metrics["memory/plan_gradient_accumulation_steps"] == 8 and tracker.metrics["memory/plan_changed"] == 1
    assert outcome.memory == at(1) and tracker.metrics["memory/estimate_total_mb"] == at(1).total / MIB
    assert "chose batch_size 1 x 8 accumulation steps, sdpa attention" in tracker.tags["adapterflow.memory_plan"]
    assert outcome.model.config._attn_implementation == "sdpa"  # switched from eager, which keeps the scores
    # the same budget with fit_memory off stops before training, as before
    with pytest.raises(AdapterflowError, match="unlikely to fit"):
        trainer_module.train_adapter(tokenized, base, method, config.model_copy(update={"fit_memory": False}), cpu,
                                     "fp32", tmp_path / "refused", max_length=64)


def test_heap_retention_scales_the_activations_only() -> None:
    model = tiny_llama()
    plain, retained = estimate(model, tokens=64), estimate(model, tokens=64, heap_retention=0.3)
    assert retained.activations == round(1.3 * plain.activations)
    assert (retained.weights, retained.gradients, retained.optimizer) == (plain.weights, plain.gradients, plain.optimizer)


def test_several_training_processes_keep_the_configured_settings_and_refuse(monkeypatch: pytest.MonkeyPatch) -> None:
    """Processes must agree on batch shapes but each measures its own free memory: no plan, the old refusal."""
    from adapterflow.training import memory_check
    from schemas.method import LoraMethod
    from schemas.training import TrainingConfig

    model, method, cpu = tiny_llama(), LoraMethod(type="lora", r=4), torch.device("cpu")
    single = TrainingConfig(max_steps=1, batch_size=4, optimizer="adamw_torch")
    monkeypatch.setattr(memory_check, "available_memory", lambda device: None)
    unknown = memory_check.preflight(model, method, single, "fp32", cpu, 16, 32, "eager", None)
    assert not unknown.changed and unknown.available is None  # nothing to check against
    needed = unknown.estimate.total - unknown.estimate.weights  # the loaded weights are already in place
    monkeypatch.setattr(memory_check, "available_memory", lambda device: needed // 2)
    fitted = memory_check.preflight(model, method, single, "fp32", cpu, 16, 32, "eager", None)
    assert fitted.changed and fitted.settings.effective_batch == 4 and fitted.estimate.total <= fitted.available
    several = single.model_copy(update={"distributed": single.distributed.model_copy(update={"num_processes": 2})})
    with pytest.raises(AdapterflowError, match="unlikely to fit") as raised:
        memory_check.preflight(model, method, several, "fp32", cpu, 16, 32, "eager", None)
    assert "training.fit_memory: true in a single-process run" in raised.value.hint
