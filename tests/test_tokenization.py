"""Chat rendering and response-only labels, on the tiny model's ChatML tokenizer."""

from __future__ import annotations

from pathlib import Path

import pytest

from adapterflow.tokenization.chat import IGNORE_INDEX, ChatTokenizer, apply_template_choice, tokenizer_fingerprint

CONVERSATION = [
    {"role": "system", "content": "Be brief."},
    {"role": "user", "content": "What does len do?"},
    {"role": "assistant", "content": "It counts items."},
    {"role": "user", "content": "And abs?"},
    {"role": "assistant", "content": "Absolute value."},
]


@pytest.fixture(scope="module")
def tokenizer(tiny_model_dir: Path):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(tiny_model_dir)


def fresh(tokenizer):
    return tokenizer.__class__.from_pretrained(tokenizer.name_or_path)


def trained_text(tokenizer, ids: list[int], labels: list[int]) -> str:
    return tokenizer.decode([token for token, label in zip(ids, labels) if label != IGNORE_INDEX])


def test_loss_only_on_responses_and_their_end_of_turn(tokenizer) -> None:
    chat = ChatTokenizer(tokenizer, max_length=256)
    batch = chat([CONVERSATION])
    ids, labels = batch.example(0)
    assert trained_text(tokenizer, ids, labels) == "It counts items.<|im_end|>Absolute value.<|im_end|>"
    assert ids == tokenizer(tokenizer.apply_chat_template(CONVERSATION, tokenize=False), add_special_tokens=False)["input_ids"]
    assert batch.end_of_turn.tolist() == [True] and batch.dropped == {}


def test_piece_by_piece_and_whole_text_tokenization_agree(tokenizer) -> None:
    conversations = [CONVERSATION, CONVERSATION[1:3]] + [
        [{"role": "user", "content": "word " * i + "end"}, {"role": "assistant", "content": f"answer {i}"}] for i in range(80)]
    chat = ChatTokenizer(tokenizer, max_length=256)
    pieces = chat(conversations)
    assert all(plan is not None and plan.checked for plan in chat.segments._plans.values())
    whole = chat.tokenize_parts([(tuple(m["role"] for m in c), [m["content"] for m in c]) for c in conversations])
    assert pieces.ids.tolist() == whole.ids.tolist() and pieces.labels.tolist() == whole.labels.tolist()
    assert pieces.offsets.tolist() == whole.offsets.tolist()


def test_system_prompt_is_added_only_where_missing(tokenizer) -> None:
    chat = ChatTokenizer(tokenizer, max_length=256, system_prompt="You are terse.")
    batch = chat([[{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}], CONVERSATION])
    assert tokenizer.decode(batch.example(0)[0]).startswith("<|im_start|>system\nYou are terse.<|im_end|>")
    assert tokenizer.decode(batch.example(1)[0]).startswith("<|im_start|>system\nBe brief.<|im_end|>")


def test_truncation_is_counted_and_empty_label_rows_dropped(tokenizer) -> None:
    chat = ChatTokenizer(tokenizer, max_length=12)
    long_prompt = [{"role": "user", "content": "word " * 40}, {"role": "assistant", "content": "answer"}]
    short = [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "a long answer " * 5}]
    batch = chat([long_prompt, short])
    assert batch.dropped == {"tokenize.no_trainable_tokens": 1}
    assert batch.truncated.tolist() == [True, True] and batch.rows == 1 and len(batch.example(0)[0]) == 12
    assert batch.overlong.tolist() == [True, True] and batch.kept.tolist() == [False, True]
    assert batch.end_of_turn.tolist() == [False, False]  # cut before the end-of-turn token
    assert (batch.length > 12).all() and batch.tokens.tolist() == [12, 12]  # lengths before and after the cut


def test_drop_policy_drops_over_long_examples_and_counts_them_once(tokenizer) -> None:
    long_prompt = [{"role": "user", "content": "word " * 40}, {"role": "assistant", "content": "answer"}]
    long_answer = [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "a long answer " * 5}]
    fits = [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "yo"}]
    truncating = ChatTokenizer(tokenizer, max_length=16)([long_prompt, long_answer, fits])
    dropping = ChatTokenizer(tokenizer, max_length=16, drop_overlong=True)([long_prompt, long_answer, fits])

    assert truncating.dropped == {"tokenize.no_trainable_tokens": 1} and truncating.rows == 2
    assert truncating.truncated.tolist() == [True, True, False]
    # dropped as over-long only, not also as "no trainable tokens"; nothing is counted as truncated
    assert dropping.dropped == {"tokenize.overlong": 2} and dropping.rows == 1
    assert dropping.truncated.tolist() == [False, False, False] and dropping.overlong.tolist() == [True, True, False]
    assert dropping.kept.tolist() == [False, False, True]
    assert dropping.example(0) == truncating.example(1)  # the example that fits is the same either way


def test_train_on_prompts_labels_everything(tokenizer) -> None:
    chat = ChatTokenizer(tokenizer, max_length=256, train_on_prompts=True)
    ids, labels = chat([[{"role": "user", "content": "hi"}, {"role": "assistant", "content": "yo"}]]).example(0)
    assert labels == ids


def test_template_without_end_of_turn_gets_eos_appended(tokenizer) -> None:
    bare = fresh(tokenizer)
    apply_template_choice(bare, "{% for m in messages %}{{ m['role'] }}: {{ m['content'] }}\n{% endfor %}")
    chat = ChatTokenizer(bare, max_length=256)
    assert chat.renderer.append_end_of_turn and chat.renderer.end_of_turn == bare.eos_token
    ids, labels = chat([[{"role": "user", "content": "hi"}, {"role": "assistant", "content": "yo"}]]).example(0)
    # " yo" is one token (the space belongs to it), so it is trained whole
    assert trained_text(bare, ids, labels).strip() == f"yo{bare.eos_token}"


def test_templates_that_transform_contents_are_rendered_with_jinja(tokenizer) -> None:
    trimmed = fresh(tokenizer)
    apply_template_choice(trimmed, "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] | trim }}<|im_end|>\n{% endfor %}")
    chat = ChatTokenizer(trimmed, max_length=256)
    assert not chat.renderer.fast
    ids, labels = chat([[{"role": "user", "content": "hi"}, {"role": "assistant", "content": "yo"}]]).example(0)
    assert trained_text(trimmed, ids, labels) == "yo<|im_end|>"


def test_fingerprint_changes_with_the_template(tokenizer) -> None:
    other = fresh(tokenizer)
    before = tokenizer_fingerprint(other)
    apply_template_choice(other, "{{ messages }}")
    assert tokenizer_fingerprint(other) != before
    assert tokenizer_fingerprint(tokenizer) == before
