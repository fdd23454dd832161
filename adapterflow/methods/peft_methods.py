"""PEFT configurations for the methods PEFT implements: the LoRA family, AdaLoRA, IA3 and prompt learning."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

from adapterflow.core.errors import AdapterflowError
from schemas.method import (
    AdaLoraMethod,
    IA3Method,
    LoraFields,
    MethodVariant,
    PrefixMethod,
    PromptMethod,
    PTuningMethod,
)

if TYPE_CHECKING:
    from peft import PeftConfig, PeftModel

LORA_INIT = {"default": True, "gaussian": "gaussian", "pissa": "pissa", "olora": "olora"}


def peft_config(method: MethodVariant, task_type: str, total_steps: int, base_path: str) -> PeftConfig:
    """The PEFT config of a PEFT-family method; `total_steps` schedules AdaLoRA's rank budget."""
    from peft import (
        AdaLoraConfig,
        IA3Config,
        LoraConfig,
        PrefixTuningConfig,
        PromptEncoderConfig,
        PromptTuningConfig,
    )

    if isinstance(method, LoraFields):
        return LoraConfig(
            task_type=task_type, r=method.r, lora_alpha=method.alpha, lora_dropout=method.dropout,
            target_modules=method.target_modules, use_rslora=method.rslora, use_dora=method.dora,
            init_lora_weights=LORA_INIT[method.init],
        )
    if isinstance(method, AdaLoraMethod):
        return AdaLoraConfig(
            task_type=task_type, init_r=method.init_r, target_r=method.target_r, lora_alpha=method.alpha,
            lora_dropout=method.dropout, target_modules=method.target_modules, total_step=total_steps,
            tinit=int(method.warmup_share * total_steps), tfinal=int(method.final_share * total_steps),
        )
    if isinstance(method, IA3Method):
        return IA3Config(task_type=task_type, target_modules=method.target_modules,
                         feedforward_modules=method.feedforward_modules)
    if isinstance(method, PrefixMethod):
        hidden = method.encoder_hidden_size or (model_hidden_size(base_path) if method.projection else None)
        return PrefixTuningConfig(task_type=task_type, num_virtual_tokens=method.num_virtual_tokens,
                                  prefix_projection=method.projection, encoder_hidden_size=hidden)
    if isinstance(method, PromptMethod):
        text = {"prompt_tuning_init": "TEXT", "prompt_tuning_init_text": method.init_text,
                "tokenizer_name_or_path": base_path} if method.init == "text" else {}
        return PromptTuningConfig(task_type=task_type, num_virtual_tokens=method.num_virtual_tokens, **text)
    if isinstance(method, PTuningMethod):
        return PromptEncoderConfig(task_type=task_type, num_virtual_tokens=method.num_virtual_tokens,
                                   encoder_reparameterization_type=method.encoder.upper(),
                                   encoder_hidden_size=method.encoder_hidden_size or model_hidden_size(base_path))
    raise TypeError(f"{method.type} is not a PEFT method")  # callers dispatch on family first


def model_hidden_size(base_path: str) -> int:
    from transformers import AutoConfig

    return AutoConfig.from_pretrained(base_path).get_text_config().hidden_size


def prefix_starts_from_text(method: PrefixMethod, task_type: str) -> bool:
    """Whether the prefix starts from real keys and values: PEFT loads them only into a prefix without
    projection, and only causal LMs return them (encoders keep no key/value cache)."""
    if method.init == "text" and task_type != "CAUSAL_LM":
        raise AdapterflowError(
            "method.init: text starts the prefix from the keys and values of a causal language model, and "
            "classification models (encoders) return none",
            hint="set method.init: auto (random values here) or random",
        )
    return method.init == "text" or (method.init == "auto" and not method.projection and task_type == "CAUSAL_LM")


def start_prefix_from_text(model: PeftModel, text: str, base_path: str) -> None:
    """Load the base model's keys and values of `text` into the prefix (prefix tuning's start from real token
    states): the text is read as a system turn, repeated or cut to the prefix's length."""
    import torch
    from peft import initialize_kv_prefix_from_past_key_values

    from adapterflow.core.logs import stage_logger
    from adapterflow.models.base import load_tokenizer

    tokenizer = load_tokenizer(base_path)
    length = model.peft_config[model.active_adapter].num_virtual_tokens
    if tokenizer.chat_template:
        ids = list(tokenizer.apply_chat_template([{"role": "system", "content": text}], tokenize=True,
                                                 return_dict=False))
    else:
        ids = tokenizer(text)["input_ids"]
    ids = (ids * math.ceil(length / len(ids)))[:length]
    input_ids = torch.tensor([ids], device=model.device)
    with torch.no_grad(), model.disable_adapter():
        cache = model(input_ids=input_ids, attention_mask=torch.ones_like(input_ids), use_cache=True).past_key_values
    initialize_kv_prefix_from_past_key_values(model, past_key_values=cache)
    stage_logger().info("prefix starts from the keys and values of %d tokens of %r", length, text)


def quantization_config(bits: int, quant_type: str, double_quant: bool, compute_dtype: str):
    """bitsandbytes settings of a QLoRA base: 4-bit (NF4/FP4, optional double quantisation) or 8-bit."""
    import torch
    from transformers import BitsAndBytesConfig

    # Heads stay in full precision: the LM head as usual, and a new classification head, which also trains.
    skip = ["lm_head", "classifier", "score"]
    if bits == 8:
        return BitsAndBytesConfig(load_in_8bit=True, llm_int8_skip_modules=skip)
    return BitsAndBytesConfig(
        load_in_4bit=True, bnb_4bit_quant_type=quant_type, bnb_4bit_use_double_quant=double_quant,
        bnb_4bit_compute_dtype=getattr(torch, compute_dtype), llm_int8_skip_modules=skip,
    )
