"""Prompt-learning defaults reach PEFT: prefix tuning starts from the base model's real keys and values of a text,
prompt tuning from a text's embeddings; projection and explicit choices are honoured or refused in plain words."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from pydantic import ValidationError

from adapterflow.core.errors import AdapterflowError
from adapterflow.methods.build import ModelSpec, build_trainable
from adapterflow.methods.peft_methods import peft_config, prefix_starts_from_text
from adapterflow.models.base import load_tokenizer
from schemas.method import DEFAULT_INIT_TEXT
from tests.methods.conftest import method_of

CPU = torch.device("cpu")


def chat_ids(model_dir: Path, text: str) -> list[int]:
    tokenizer = load_tokenizer(model_dir)
    return list(tokenizer.apply_chat_template([{"role": "system", "content": text}], tokenize=True, return_dict=False))


@pytest.mark.parametrize("num_virtual_tokens", [6, 40])  # cut from the text, and the text repeated
def test_default_prefix_is_the_base_models_keys_and_values_of_the_text(tiny_model_dir: Path, num_virtual_tokens: int) -> None:
    method = method_of({"type": "prefix", "num_virtual_tokens": num_virtual_tokens})
    text_ids = chat_ids(tiny_model_dir, DEFAULT_INIT_TEXT)
    prefix_ids = (text_ids * (num_virtual_tokens // len(text_ids) + 1))[:num_virtual_tokens]
    assert (len(text_ids) > num_virtual_tokens) == (num_virtual_tokens == 6)

    model = build_trainable(method, str(tiny_model_dir), ModelSpec(), CPU, total_steps=4).eval()
    ids = torch.tensor([chat_ids(tiny_model_dir, "What does json.dumps do?")])
    with torch.no_grad():
        prefixed = model(input_ids=ids, attention_mask=torch.ones_like(ids)).logits
        with model.disable_adapter():
            full = torch.tensor([prefix_ids]).long()
            reference = model(input_ids=torch.cat([full, ids], dim=1)).logits[:, num_virtual_tokens:]
    # the untrained prefix model reads the input exactly as the base model reads it after the text
    torch.testing.assert_close(prefixed, reference, rtol=1e-4, atol=1e-4)
    assert model.peft_config["default"].prefix_projection is False
    assert method.default_learning_rate == 3e-2


def test_prefix_projection_gets_the_models_hidden_size_and_its_own_learning_rate(tiny_model_dir: Path) -> None:
    method = method_of({"type": "prefix", "projection": True})
    config = peft_config(method, "CAUSAL_LM", 4, str(tiny_model_dir))
    assert (config.prefix_projection, config.encoder_hidden_size) == (True, 32)  # the tiny model's hidden size
    assert method.default_learning_rate == 1e-3
    assert not prefix_starts_from_text(method, "CAUSAL_LM")  # auto: projection starts from random values
    assert peft_config(method_of({"type": "prefix", "projection": True, "encoder_hidden_size": 8}), "CAUSAL_LM", 4,
                       str(tiny_model_dir)).encoder_hidden_size == 8


def test_prefix_start_follows_init_and_task() -> None:
    assert prefix_starts_from_text(method_of({"type": "prefix"}), "CAUSAL_LM")
    assert not prefix_starts_from_text(method_of({"type": "prefix"}), "SEQ_CLS")  # encoders return no cache
    assert not prefix_starts_from_text(method_of({"type": "prefix", "init": "random"}), "CAUSAL_LM")
    with pytest.raises(AdapterflowError, match="classification models .encoders. return none") as raised:
        prefix_starts_from_text(method_of({"type": "prefix", "init": "text"}), "SEQ_CLS")
    assert "method.init: auto" in raised.value.hint
    with pytest.raises(ValidationError, match="set init: random"):
        method_of({"type": "prefix", "init": "text", "projection": True})


def test_prompt_tuning_starts_from_the_default_text(tiny_model_dir: Path) -> None:
    config = peft_config(method_of({"type": "prompt"}), "CAUSAL_LM", 4, str(tiny_model_dir))
    assert (config.prompt_tuning_init, config.prompt_tuning_init_text) == ("TEXT", DEFAULT_INIT_TEXT)
    assert peft_config(method_of({"type": "prompt", "init": "random"}), "CAUSAL_LM", 4,
                       str(tiny_model_dir)).prompt_tuning_init == "RANDOM"


def test_ptuning_encoder_is_as_wide_as_the_model(tiny_model_dir: Path) -> None:
    method = method_of({"type": "ptuning"})
    config = peft_config(method, "CAUSAL_LM", 4, str(tiny_model_dir))
    assert (config.encoder_reparameterization_type, config.encoder_hidden_size) == ("MLP", 32)
    assert method.default_learning_rate == 3e-3
