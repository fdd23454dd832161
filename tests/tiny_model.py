"""A tiny randomly initialised llama model with a locally trained tokenizer: no network, built in about a second."""

from __future__ import annotations

from pathlib import Path

from adapterflow.tokenization.chat import CHATML_TEMPLATE

SPECIAL_TOKENS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
ASSETS = Path(__file__).parent / "assets"


def corpus() -> list[str]:
    """Text to learn a byte-level BPE from: the test assets plus some English and Python."""
    lines = [line for path in sorted(ASSETS.glob("*.jsonl")) for line in path.read_text(errors="replace").splitlines()]
    filler = [
        "What does the function return? It returns the sum of its arguments.",
        "def add(a, b):\n    return a + b",
        "system user assistant You are a helpful assistant.",
    ]
    return lines + filler * 20


def build_tiny_model(folder: Path, hidden: int = 32, layers: int = 2, vocab_size: int = 512) -> Path:
    """Write a tokenizer (with a ChatML template) and a random LlamaForCausalLM to `folder`."""
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    backend = Tokenizer(models.BPE())
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    backend.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size, special_tokens=SPECIAL_TOKENS, initial_alphabet=pre_tokenizers.ByteLevel.alphabet()
    )
    backend.train_from_iterator(corpus(), trainer)
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=backend, eos_token="<|im_end|>", pad_token="<|endoftext|>", bos_token="<|im_start|>",
        additional_special_tokens=SPECIAL_TOKENS,
    )
    tokenizer.chat_template = CHATML_TEMPLATE
    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=len(tokenizer), hidden_size=hidden, intermediate_size=hidden * 2, num_hidden_layers=layers,
        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=1024, tie_word_embeddings=True,
        initializer_range=0.2,  # larger than usual so that a frozen tiny model still has room to learn through adapters
        eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id, bos_token_id=tokenizer.bos_token_id,
    )
    model = LlamaForCausalLM(config)
    folder.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def build_tiny_classifier(folder: Path, hidden: int = 32, layers: int = 2) -> Path:
    """Write a random BERT encoder with the tokenizer of the packaged all-MiniLM-L6-v2 to `folder`."""
    import torch
    from transformers import AutoTokenizer, BertConfig, BertModel

    from adapterflow.models.base import BUILTIN_FOLDERS, package_folder

    package, subfolder = BUILTIN_FOLDERS["all-minilm-l6-v2"]
    tokenizer = AutoTokenizer.from_pretrained(package_folder("all-minilm-l6-v2", package) / subfolder)
    torch.manual_seed(0)
    config = BertConfig(vocab_size=len(tokenizer), hidden_size=hidden, num_hidden_layers=layers, num_attention_heads=4,
                        intermediate_size=hidden * 2, max_position_embeddings=256, pad_token_id=tokenizer.pad_token_id,
                        initializer_range=0.2)  # as in the tiny llama: enough signal for a few steps to learn from
    folder.mkdir(parents=True, exist_ok=True)
    BertModel(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def tiny_config(tiny_model_dir: Path, sources: list[dict] | None = None, **sections: dict) -> dict:
    """A pipeline config for the tiny model and the test assets, with sections overridden."""
    config = {
        "name": "tiny-assistant",
        "base_model": str(tiny_model_dir),
        "data": {
            "sources": sources or [{"path": str(ASSETS / "alpaca.jsonl")}, {"path": str(ASSETS / "chat.jsonl")}],
            "split": {"eval_size": 0.2, "seed": 1, "validation_size": 4, "min_validation_rows": 4},
            "validation": {"min_rows": 10},
        },
        "tokenize": {"max_length": 128},
        "method": {"type": "lora", "r": 4, "alpha": 8},
        "training": {"max_steps": 12, "batch_size": 4, "learning_rate": 0.01, "logging_steps": 2, "precision": "fp32"},
        "evaluation": {"batch_size": 8, "sample_generations": 2, "max_new_tokens": 6},
        "execution": {"device": "cpu"},
    }
    for section, values in sections.items():
        if isinstance(values, dict) and isinstance(config.get(section), dict):
            config[section] = {**config[section], **values}
        else:
            config[section] = values
    return config
