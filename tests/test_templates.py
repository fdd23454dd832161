"""Which chat templates can be filled in without Jinja per conversation, and piece-wise tokenization checks."""

from __future__ import annotations

import pytest

from adapterflow.tokenization.chat import CHATML_TEMPLATE
from adapterflow.tokenization.templates import contents_only_printed


@pytest.mark.parametrize(
    ("template", "expected"),
    [
        (CHATML_TEMPLATE, True),
        ("{% for m in messages %}{{ m.role }}: {{ m.content }}\n{% endfor %}", True),
        ("{% for m in messages %}{{ m['content'] | trim }}{% endfor %}", False),
        ("{% for m in messages %}{% if m['content'].startswith('x') %}X{% endif %}{{ m['content'] }}{% endfor %}", False),
        ("{% set first = messages[0]['content'] %}{{ first }}", False),
        ("{% for m in messages %}{{ m['content'][:10] }}{% endfor %}", False),
        ("{% for m in messages %", False),  # does not parse
    ],
)
def test_contents_only_printed(template: str, expected: bool) -> None:
    assert contents_only_printed(template) is expected


def test_a_tokenizer_that_marks_every_call_falls_back_to_whole_texts(tiny_model_dir) -> None:
    """SentencePiece-style tokenizers prepend a word marker to each call: pieces can't be tokenized alone."""
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    from adapterflow.tokenization.chat import ChatTokenizer

    backend = Tokenizer(models.BPE(unk_token="<unk>"))
    backend.pre_tokenizer = pre_tokenizers.Metaspace(prepend_scheme="always")
    backend.train_from_iterator(["hello world how are you", "fine thanks and you"] * 50,
                                trainers.BpeTrainer(vocab_size=120, special_tokens=["<unk>", "<|im_start|>", "<|im_end|>"]))
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=backend, eos_token="<|im_end|>", pad_token="<unk>")
    tokenizer.chat_template = CHATML_TEMPLATE
    chat = ChatTokenizer(tokenizer, max_length=128)
    conversations = [[{"role": "user", "content": "hello world"}, {"role": "assistant", "content": "fine thanks"}]] * 3
    batch = chat(conversations)
    assert list(chat.segments._plans.values()) == [None]  # the check found the mismatch
    whole = tokenizer(tokenizer.apply_chat_template(conversations[0], tokenize=False), add_special_tokens=False)["input_ids"]
    assert batch.example(0)[0] == whole
