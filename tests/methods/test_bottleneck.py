"""Bottleneck adapters on tiny random llama and BERT models: targets, zero start, training, saving, errors."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from adapterflow.core.errors import AdapterflowError
from adapterflow.methods.bottleneck import bottleneck_parameter_names, inject_bottlenecks, target_module_names

ARCHITECTURES = ("llama", "bert")
EXPECTED_TARGETS = {
    ("llama", "houlsby"): [
        "model.layers.0.self_attn.o_proj", "model.layers.0.mlp.down_proj",
        "model.layers.1.self_attn.o_proj", "model.layers.1.mlp.down_proj",
    ],
    ("llama", "pfeiffer"): ["model.layers.0.mlp.down_proj", "model.layers.1.mlp.down_proj"],
    ("bert", "houlsby"): [
        "bert.encoder.layer.0.attention.output.dense", "bert.encoder.layer.0.output.dense",
        "bert.encoder.layer.1.attention.output.dense", "bert.encoder.layer.1.output.dense",
    ],
    ("bert", "pfeiffer"): ["bert.encoder.layer.0.output.dense", "bert.encoder.layer.1.output.dense"],
}


def build(architecture: str) -> torch.nn.Module:
    """The same tiny random model every time (fixed seed), in eval mode so that dropout doesn't blur comparisons."""
    import transformers

    torch.manual_seed(0)
    if architecture == "llama":
        config = transformers.LlamaConfig(
            vocab_size=64, hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
            num_key_value_heads=2,
        )
        model = transformers.LlamaForCausalLM(config)
    else:
        config = transformers.BertConfig(
            vocab_size=64, hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64,
            num_labels=3,
        )
        model = transformers.BertForSequenceClassification(config)
    return model.eval()


def batch(architecture: str) -> dict[str, torch.Tensor]:
    input_ids = torch.randint(0, 64, (4, 8), generator=torch.Generator().manual_seed(1))
    labels = input_ids if architecture == "llama" else torch.tensor([0, 1, 2, 0])
    return {"input_ids": input_ids, "labels": labels}


def logits(model: torch.nn.Module, architecture: str) -> torch.Tensor:
    with torch.no_grad():
        return model(input_ids=batch(architecture)["input_ids"]).logits


@pytest.mark.parametrize("architecture", ARCHITECTURES)
@pytest.mark.parametrize("style", ["houlsby", "pfeiffer"])
def test_targets_per_style_and_architecture(architecture: str, style: str) -> None:
    model = build(architecture)
    expected = EXPECTED_TARGETS[(architecture, style)]
    assert target_module_names(model, style) == expected
    assert inject_bottlenecks(model, style, reduction_factor=4, non_linearity="gelu") == expected
    parts = ("down.weight", "down.bias", "up.weight", "up.bias")
    assert bottleneck_parameter_names(model) == [f"{target}.bottleneck.{part}" for target in expected for part in parts]
    assert model.get_submodule(f"{expected[0]}.bottleneck.down").weight.shape == (8, 32)


@pytest.mark.parametrize("architecture", ARCHITECTURES)
@pytest.mark.parametrize("style", ["houlsby", "pfeiffer"])
def test_injected_model_starts_out_as_the_base_model(architecture: str, style: str) -> None:
    model = build(architecture)
    before = logits(model, architecture)
    inject_bottlenecks(model, style, reduction_factor=4, non_linearity="relu")
    assert torch.equal(logits(model, architecture), before)
    # The hooks are live: a non-zero up projection changes the outputs (a random one: BERT's LayerNorm cancels
    # a constant shift).
    with torch.no_grad():
        torch.nn.init.normal_(model.get_submodule(f"{target_module_names(model, style)[0]}.bottleneck.up").weight)
    assert not torch.allclose(logits(model, architecture), before)


def test_adapters_follow_the_target_dtype() -> None:
    model = build("llama").to(torch.bfloat16)
    inject_bottlenecks(model, "pfeiffer", reduction_factor=2, non_linearity="silu")
    assert {model.get_parameter(name).dtype for name in bottleneck_parameter_names(model)} == {torch.bfloat16}


@pytest.mark.parametrize("architecture", ARCHITECTURES)
def test_training_only_the_bottlenecks_lowers_the_loss_and_keeps_base_weights(architecture: str) -> None:
    model = build(architecture)
    inject_bottlenecks(model, "houlsby", reduction_factor=4, non_linearity="gelu")
    trainable = set(bottleneck_parameter_names(model))
    base_before = {name: p.detach().clone() for name, p in model.named_parameters() if name not in trainable}
    for name, parameter in model.named_parameters():
        parameter.requires_grad_(name in trainable)
    optimizer = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    losses = []
    for _ in range(6):
        loss = model(**batch(architecture)).loss
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < losses[0]
    for name, parameter in model.named_parameters():
        if name not in trainable:
            assert torch.equal(parameter, base_before[name]), name


@pytest.mark.parametrize("architecture", ARCHITECTURES)
def test_bottlenecks_round_trip_through_safetensors(architecture: str, tmp_path: Path) -> None:
    trained = build(architecture)
    inject_bottlenecks(trained, "houlsby", 4, "gelu")
    names = bottleneck_parameter_names(trained)
    with torch.no_grad():
        for name in names:
            torch.nn.init.normal_(trained.get_parameter(name), std=0.1)
    path = tmp_path / "bottlenecks.safetensors"
    save_file({name: trained.get_parameter(name).detach() for name in names}, str(path))

    fresh = build(architecture)
    inject_bottlenecks(fresh, "houlsby", 4, "gelu")
    assert not torch.allclose(logits(fresh, architecture), logits(trained, architecture))
    state = load_file(str(path))
    assert sorted(state) == sorted(names)
    result = fresh.load_state_dict(state, strict=False)
    assert result.unexpected_keys == [] and not set(names) & set(result.missing_keys)
    assert torch.equal(logits(fresh, architecture), logits(trained, architecture))


def test_a_model_without_targets_is_refused_with_the_names_looked_for() -> None:
    model = torch.nn.Sequential(torch.nn.Linear(8, 8), torch.nn.ReLU(), torch.nn.Linear(8, 8))
    with pytest.raises(AdapterflowError, match=r"Sequential.*mlp\.down_proj.*output\.dense") as caught:
        inject_bottlenecks(model, "pfeiffer", reduction_factor=2, non_linearity="relu")
    assert "lora" in (caught.value.hint or "")
    assert bottleneck_parameter_names(model) == []


def test_injecting_twice_is_refused() -> None:
    model = build("bert")
    inject_bottlenecks(model, "pfeiffer", reduction_factor=4, non_linearity="relu")
    with pytest.raises(AdapterflowError, match="already has bottleneck adapters"):
        inject_bottlenecks(model, "houlsby", reduction_factor=4, non_linearity="relu")
    assert len(bottleneck_parameter_names(model)) == 2 * 4


@pytest.mark.parametrize(
    ("style", "reduction_factor", "non_linearity", "message"),
    [
        ("parallel", 4, "relu", "unknown bottleneck adapter style"),
        ("houlsby", 0, "relu", "leaves no units"),
        ("houlsby", 64, "relu", "leaves no units for hidden size 32"),
        ("houlsby", 4, "tanh", "unknown bottleneck non-linearity"),
    ],
)
def test_bad_settings_are_refused_and_leave_the_model_untouched(
    style: str, reduction_factor: int, non_linearity: str, message: str
) -> None:
    model = build("llama")
    with pytest.raises(AdapterflowError, match=message):
        inject_bottlenecks(model, style, reduction_factor, non_linearity)
    assert bottleneck_parameter_names(model) == []
