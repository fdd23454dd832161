"""Bottleneck adapters (Houlsby, Pfeiffer) injected into llama-style decoders and BERT-style encoders."""

from __future__ import annotations

import re

import torch

from adapterflow.core.errors import AdapterflowError

STYLES = ("houlsby", "pfeiffer")
NON_LINEARITIES = {"relu": torch.nn.ReLU, "gelu": torch.nn.GELU, "silu": torch.nn.SiLU}

# Qualified-name suffixes of the Linear layers adapters go after; N is a layer index.
ATTENTION_OUTPUTS = ("layers.N.self_attn.o_proj", "encoder.layer.N.attention.output.dense")
FEED_FORWARD_OUTPUTS = ("layers.N.mlp.down_proj", "encoder.layer.N.output.dense")


class Bottleneck(torch.nn.Module):
    """Down projection, non-linearity, up projection: the residual delta added to a layer's output."""

    def __init__(self, hidden_size: int, reduction_factor: int, non_linearity: str) -> None:
        super().__init__()
        if non_linearity not in NON_LINEARITIES:
            raise AdapterflowError(
                f"unknown bottleneck non-linearity {non_linearity!r}", hint=f"use one of {', '.join(NON_LINEARITIES)}"
            )
        if reduction_factor < 1 or hidden_size // reduction_factor < 1:
            raise AdapterflowError(
                f"bottleneck reduction factor {reduction_factor} leaves no units for hidden size {hidden_size}",
                hint=f"use a reduction factor between 1 and {hidden_size}",
            )
        units = hidden_size // reduction_factor
        self.down = torch.nn.Linear(hidden_size, units)
        self.act = NON_LINEARITIES[non_linearity]()
        self.up = torch.nn.Linear(units, hidden_size)
        # A zero up projection makes the adapted model start out exactly as the base model.
        torch.nn.init.zeros_(self.up.weight)
        torch.nn.init.zeros_(self.up.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.up(self.act(self.down(x)))


def _suffix_pattern(suffix: str) -> re.Pattern[str]:
    return re.compile(r"(?:.*\.)?" + re.escape(suffix).replace("N", r"\d+"))


def _suffixes(style: str) -> tuple[str, ...]:
    if style not in STYLES:
        raise AdapterflowError(f"unknown bottleneck adapter style {style!r}", hint=f"use one of {', '.join(STYLES)}")
    return ATTENTION_OUTPUTS + FEED_FORWARD_OUTPUTS if style == "houlsby" else FEED_FORWARD_OUTPUTS


def target_module_names(model: torch.nn.Module, style: str) -> list[str]:
    """Qualified names of the Linear modules that get an adapter in `style`, in model order."""
    patterns = [_suffix_pattern(suffix) for suffix in _suffixes(style)]
    return [
        name
        for name, module in model.named_modules()
        if isinstance(module, torch.nn.Linear) and any(pattern.fullmatch(name) for pattern in patterns)
    ]


def _add_bottleneck(module: torch.nn.Module, args: tuple[object, ...], output: torch.Tensor) -> torch.Tensor:
    # Module-level rather than a closure so that deep-copied models hook their own adapter.
    return output + module.bottleneck(output)


def inject_bottlenecks(model: torch.nn.Module, style: str, reduction_factor: int, non_linearity: str) -> list[str]:
    """Add a `bottleneck` child to each target Linear, hooked to add its delta to the output; returns the targets."""
    if any(isinstance(module, Bottleneck) for module in model.modules()):
        raise AdapterflowError(
            "the model already has bottleneck adapters", hint="inject into a freshly loaded base model only once"
        )
    names = target_module_names(model, style)
    if not names:
        looked_for = ", ".join(suffix.replace("N", "<i>") for suffix in _suffixes(style))
        raise AdapterflowError(
            f"found no modules for {style} bottleneck adapters in {type(model).__name__}: "
            f"looked for Linear modules named like {looked_for}",
            hint="this architecture isn't supported by bottleneck adapters; use another method, e.g. lora",
        )
    targets = [model.get_submodule(name) for name in names]
    # Build every adapter before attaching any, so that a bad setting leaves the model untouched.
    bottlenecks = [
        Bottleneck(target.out_features, reduction_factor, non_linearity).to(
            device=target.weight.device, dtype=target.weight.dtype
        )
        for target in targets
    ]
    for target, bottleneck in zip(targets, bottlenecks):
        target.add_module("bottleneck", bottleneck)
        target.register_forward_hook(_add_bottleneck)
    return names


def bottleneck_parameter_names(model: torch.nn.Module) -> list[str]:
    """Qualified names of all parameters inside injected bottlenecks."""
    return [
        f"{name}.{parameter_name}"
        for name, module in model.named_modules()
        if isinstance(module, Bottleneck)
        for parameter_name, _ in module.named_parameters()
    ]
