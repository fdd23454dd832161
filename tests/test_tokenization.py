"""Chat rendering and response-only labels, on the tiny model's ChatML tokenizer."""

from __future__ import annotations

from pathlib import Path

import pytest

from adapterflow.tokenization import IGNORE_INDEX, ChatTokenizer, apply_template_choice, tokenizer_fingerprint


@pytest.fixture(scope="module")
def tokenizer(tiny_model_dir: Path):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(tiny_model_dir)


def trained_text(tokenizer, ids: list[int], labels: list[int]) -> str:
    return tokenizer.decode([token for token, label in zip(ids, labels) if label != IGNORE_INDEX])


def test_loss_only_on_responses_and_their_end_of_turn(tokenizer) -> None:
    chat = ChatTokenizer(tokenizer, max_length=256)
    conversation = [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "What does len do?"},
        {"role": "assistant", "content": "It counts items."},
        {"role": "user", "content": "And abs?"},
        {"role": "assistant", "content": "Absolute value."},
    ]
    batch = chat([conversation])
    (ids,), (labels,) = batch.input_ids, batch.labels
    assert trained_text(tokenizer, ids, labels) == "It counts items.<|im_end|>Absolute value.<|im_end|>"
    assert batch.with_end_of_turn == 1 and batch.dropped == {}


def test_system_prompt_is_added_only_where_missing(tokenizer) -> None:
    chat = ChatTokenizer(tokenizer, max_length=256, system_prompt="You are terse.")
    rows = [[{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}]]
    text = tokenizer.decode(chat(rows).input_ids[0])
    assert text.startswith("<|im_start|>system\nYou are terse.<|im_end|>")


def test_truncation_is_counted_and_empty_label_rows_dropped(tokenizer) -> None:
    chat = ChatTokenizer(tokenizer, max_length=12)
    long_prompt = [{"role": "user", "content": "word " * 40}, {"role": "assistant", "content": "answer"}]
    short = [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "a long answer " * 5}]
    batch = chat([long_prompt, short])
    assert batch.dropped == {"tokenize.no_trainable_tokens": 1}
    assert batch.truncated == 2 and len(batch.input_ids[0]) == 12


def test_train_on_prompts_labels_everything(tokenizer) -> None:
    chat = ChatTokenizer(tokenizer, max_length=256, train_on_prompts=True)
    batch = chat([[{"role": "user", "content": "hi"}, {"role": "assistant", "content": "yo"}]])
    assert batch.labels[0] == batch.input_ids[0]


def test_template_without_end_of_turn_gets_eos_appended(tokenizer) -> None:
    bare = tokenizer.__class__.from_pretrained(tokenizer.name_or_path)
    apply_template_choice(bare, "{% for m in messages %}{{ m['role'] }}: {{ m['content'] }}\n{% endfor %}")
    chat = ChatTokenizer(bare, max_length=256)
    assert chat.append_end_of_turn and chat.end_of_turn == bare.eos_token
    batch = chat([[{"role": "user", "content": "hi"}, {"role": "assistant", "content": "yo"}]])
    assert trained_text(bare, batch.input_ids[0], batch.labels[0]) == f"yo{bare.eos_token}"


def test_fingerprint_changes_with_the_template(tokenizer) -> None:
    other = tokenizer.__class__.from_pretrained(tokenizer.name_or_path)
    before = tokenizer_fingerprint(other)
    apply_template_choice(other, "{{ messages }}")
    assert tokenizer_fingerprint(other) != before
    assert tokenizer_fingerprint(tokenizer) == before
