"""Load a base model for a task and make the configured method's parameters (and only those) trainable."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import torch

from adapterflow.core.errors import AdapterflowError
from adapterflow.methods.bottleneck import bottleneck_parameter_names, inject_bottlenecks
from adapterflow.methods.dtypes import compute_dtype, frozen_dtype, inference_precision, keep_trainable_in_float32
from adapterflow.methods.peft_methods import (
    peft_config,
    prefix_starts_from_text,
    quantization_config,
    start_prefix_from_text,
)
from schemas.method import (
    BitFitMethod,
    BottleneckMethod,
    FreezeMethod,
    FullMethod,
    MethodVariant,
    PrefixMethod,
    QLoraMethod,
)

PEFT_TASK_TYPES = {"sft": "CAUSAL_LM", "pretrain": "CAUSAL_LM", "classification": "SEQ_CLS"}
HEAD_NAMES = ("classifier", "score")  # sequence-classification heads of encoder and decoder models


@dataclass
class ModelSpec:
    """How to load the base for a trained model: task, labels, quantisation. Saved with every artifact."""

    task: str = "sft"
    label_names: list[str] = field(default_factory=list)
    pad_token_id: int | None = None
    quantization: dict[str, Any] | None = None
    max_length: int | None = None  # inputs were cut to this many tokens in training; serving does the same
    dtype: str = "float32"  # of the weights that are not quantised (methods/dtypes.py decides it)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @property
    def precision(self) -> str:
        """The precision the model loaded from this spec computes in (bf16, fp16 or fp32)."""
        return inference_precision(self.dtype, self.quantization)


def spec_for(
    method: MethodVariant, task: str, label_names: list[str], pad_token_id: int | None, precision: str,
    max_length: int | None = None, base_dtype: str = "auto", device_type: str = "cpu",
) -> ModelSpec:
    """How to load the base for training `method` at the resolved `precision` on a `device_type` device."""
    quantization = None
    if isinstance(method, QLoraMethod):
        # bf16 compute wherever training runs in bf16 (CPUs with avx512_bf16 and CUDA); fp32 otherwise
        quantization = {"bits": method.bits, "quant_type": method.quant_type, "double_quant": method.double_quant,
                        "compute_dtype": compute_dtype(precision)}
    return ModelSpec(task=task, label_names=label_names, pad_token_id=pad_token_id, quantization=quantization,
                     max_length=max_length, dtype=frozen_dtype(method, precision, device_type, base_dtype))


def logical_numel(parameter: torch.nn.Parameter) -> int:
    """Weights a parameter stands for: bitsandbytes packs two 4-bit weights into each stored byte."""
    return parameter.numel() * (2 if type(parameter).__name__ == "Params4bit" else 1)


CAUSAL_ARCHITECTURES = ("ForCausalLM", "LMHeadModel", "ForConditionalGeneration")


def check_causal(path: str) -> None:
    """Causal-LM tasks need a decoder: an encoder's LM head would see the very token it predicts."""
    from transformers import AutoConfig

    architectures = getattr(AutoConfig.from_pretrained(path), "architectures", None) or []
    if architectures and not any(name.endswith(CAUSAL_ARCHITECTURES) for name in architectures):
        raise AdapterflowError(
            f"base model {path} is {', '.join(architectures)}, not a causal (decoder) language model",
            hint="train encoders on classification data (text + label), or pick a decoder such as smollm2-135m-instruct",
        )


def base_load_options(spec: ModelSpec, device: torch.device, attention: str | None = None) -> dict[str, Any]:
    """`from_pretrained` options that load a base as `spec` says: its dtype, and 4/8-bit on `device` for QLoRA.
    The one loading decision of training, evaluation, the registered pyfunc and export."""
    options: dict[str, Any] = {"dtype": getattr(torch, spec.dtype)}
    if attention:
        options["attn_implementation"] = attention
    if spec.quantization:
        options["quantization_config"] = quantization_config(**spec.quantization)
        options["device_map"] = {"": device}
    return options


def load_base(path: str, spec: ModelSpec, device: torch.device, attention: str | None = None) -> torch.nn.Module:
    """The base model with the head its task needs, quantised when the spec says so, on `device`."""
    from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification

    options = base_load_options(spec, device, attention)
    if spec.task == "classification":
        if len(spec.label_names) < 2:
            raise AdapterflowError(f"classification needs at least two labels in the training data, found {spec.label_names}")
        labels = dict(enumerate(spec.label_names))
        try:
            model = AutoModelForSequenceClassification.from_pretrained(
                path, num_labels=len(labels), id2label=labels, label2id={v: k for k, v in labels.items()}, **options
            )
        except ValueError as exc:
            raise AdapterflowError(f"base model {path} has no sequence-classification head: {exc}",
                                   hint="use an encoder such as all-MiniLM-L6-v2 or a decoder transformers supports") from None
        if model.config.pad_token_id is None:  # decoders classify from the last non-pad token
            model.config.pad_token_id = spec.pad_token_id
    else:
        check_causal(path)
        model = AutoModelForCausalLM.from_pretrained(path, **options)
    if spec.quantization:
        # Quantised weights are never trained. bitsandbytes' CPU kernels also take another (bf16) path for
        # weights that require grad, so freezing them makes training and inference compute the same logits.
        return model.requires_grad_(False)
    return model.to(device)


def build_trainable(
    method: MethodVariant, base_path: str, spec: ModelSpec, device: torch.device, *, total_steps: int,
    attention: str | None = None, gradient_checkpointing: bool = False,
) -> torch.nn.Module:
    """The base model prepared for `method`: PEFT-wrapped, or with everything but the method's parameters frozen;
    what trains is in fp32 (full fine-tuning: the dtype of the whole model)."""
    model = prepare_method(method, load_base(base_path, spec, device, attention), base_path, spec, total_steps,
                           gradient_checkpointing)
    if not isinstance(method, FullMethod):
        keep_trainable_in_float32(model)
    return model


def prepare_method(
    method: MethodVariant, model: torch.nn.Module, base_path: str, spec: ModelSpec, total_steps: int,
    gradient_checkpointing: bool,
) -> torch.nn.Module:
    """Wrap or freeze the loaded base so that only `method`'s parameters train."""
    if method.family == "peft":
        from peft import get_peft_model, prepare_model_for_kbit_training

        if spec.quantization:
            model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=gradient_checkpointing)
        task_type = PEFT_TASK_TYPES[spec.task]
        config = peft_config(method, task_type, total_steps, base_path)
        try:
            model = get_peft_model(model, config)
        except ValueError as exc:  # e.g. target_modules that match nothing in this model
            raise AdapterflowError(f"method {method.type} does not apply to {type(model).__name__}: {exc}",
                                   hint="check method.target_modules against the model's module names") from None
        if isinstance(method, PrefixMethod) and prefix_starts_from_text(method, task_type):
            start_prefix_from_text(model, method.init_text, base_path)
        return model
    if isinstance(method, FreezeMethod):
        train_last_layers(model, method)
    elif isinstance(method, BitFitMethod):
        train_biases_only(model)
    elif isinstance(method, BottleneckMethod):
        model.requires_grad_(False)
        inject_bottlenecks(model, method.style, method.reduction_factor, method.non_linearity)
        for name in bottleneck_parameter_names(model):
            model.get_parameter(name).requires_grad_(True)
    unfreeze_head(model)
    return model


def transformer_layers(model: torch.nn.Module) -> tuple[str, torch.nn.ModuleList]:
    """The model's stack of transformer blocks: its longest ModuleList."""
    stacks = [(name, module) for name, module in model.named_modules() if isinstance(module, torch.nn.ModuleList)]
    if not stacks:
        raise AdapterflowError(f"{type(model).__name__} has no list of transformer layers to unfreeze")
    return max(stacks, key=lambda item: len(item[1]))


def train_last_layers(model: torch.nn.Module, method: FreezeMethod) -> None:
    model.requires_grad_(False)
    _, layers = transformer_layers(model)
    if method.trainable_layers > len(layers):
        raise AdapterflowError(
            f"method.trainable_layers is {method.trainable_layers} but the model has {len(layers)} layers",
            hint=f"use at most {len(layers)}, or method full",
        )
    for layer in layers[len(layers) - method.trainable_layers:]:
        layer.requires_grad_(True)
    unmatched = []
    for suffix in method.trainable_modules:
        matches = [module for name, module in model.named_modules() if name == suffix or name.endswith("." + suffix)]
        for module in matches:
            module.requires_grad_(True)
        if not matches:
            unmatched.append(suffix)
    if unmatched:
        raise AdapterflowError(f"method.trainable_modules: no module named {unmatched} in {type(model).__name__}",
                               hint="list qualified module names or their last parts, e.g. lm_head or norm")


def train_biases_only(model: torch.nn.Module) -> None:
    model.requires_grad_(False)
    biases = [(name, parameter) for name, parameter in model.named_parameters()
              if name.endswith(".bias") and not name.split(".")[0] in HEAD_NAMES]
    if not biases:
        raise AdapterflowError(
            f"BitFit trains only bias terms, and {type(model).__name__} has none (llama-style models have no biases)",
            hint="use method ia3 or lora for a similarly small adapter, or a model with biases (BERT, GPT-2)",
        )
    for _, parameter in biases:
        parameter.requires_grad_(True)


def unfreeze_head(model: torch.nn.Module) -> None:
    """A classification head is new: it always trains (PEFT does the same with modules_to_save)."""
    for name in HEAD_NAMES:
        head = getattr(model, name, None)
        if isinstance(head, torch.nn.Module):
            head.requires_grad_(True)
