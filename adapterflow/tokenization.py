"""Chat-template rendering and response-only label masks, computed for a whole batch at once.

A batch of conversations is rendered to text with the chat template, tokenized in one call with
character offsets, and each token is labelled when its characters fall inside an assistant message
(plus the end-of-turn marker, so the model learns to stop). No per-example template or tokenizer calls.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from adapterflow.errors import AdapterflowError
from adapterflow.hashing import sha256_json

IGNORE_INDEX = -100
CHATML_TEMPLATE = (
    "{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n' }}"
    "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)
_PROBE_USER = "\u2063adapterflow-probe-user\u2063"
_PROBE_ASSISTANT = "\u2063adapterflow-probe-assistant\u2063"


def apply_template_choice(tokenizer: Any, chat_template: str | None) -> None:
    """Install the configured chat template; fail clearly when the model has none."""
    if chat_template == "chatml":
        tokenizer.chat_template = CHATML_TEMPLATE
    elif chat_template:
        tokenizer.chat_template = chat_template
    if not getattr(tokenizer, "chat_template", None):
        raise AdapterflowError(
            "the base model's tokenizer has no chat template",
            hint="set tokenize.chat_template: chatml (or a Jinja template)",
        )


def tokenizer_fingerprint(tokenizer: Any) -> str:
    """Hash of everything that decides token ids: vocabulary and merges, special tokens, chat template."""
    backend = tokenizer.backend_tokenizer.to_str() if hasattr(tokenizer, "backend_tokenizer") else repr(tokenizer.get_vocab())
    return sha256_json([backend, tokenizer.chat_template, tokenizer.all_special_tokens, type(tokenizer).__name__])


def end_of_turn_marker(tokenizer: Any) -> tuple[str, bool]:
    """The text the template puts after an assistant message, and whether it must be added by us.

    ChatML gives `<|im_end|>`, Llama 3 `<|eot_id|>`. A template that closes no turn gets the EOS
    token appended, otherwise a fine-tuned model never learns to stop talking.
    """
    probe = [{"role": "user", "content": _PROBE_USER}, {"role": "assistant", "content": _PROBE_ASSISTANT}]
    text = tokenizer.apply_chat_template(probe, tokenize=False)
    suffix = text[text.index(_PROBE_ASSISTANT) + len(_PROBE_ASSISTANT) :].strip()
    if suffix and len(suffix) <= 32:
        return suffix, False
    return tokenizer.eos_token or "", True


@dataclass
class TokenizedBatch:
    """Token ids and labels of the kept examples, and why the others were dropped."""

    input_ids: list[list[int]] = field(default_factory=list)
    labels: list[list[int]] = field(default_factory=list)
    dropped: dict[str, int] = field(default_factory=dict)
    truncated: int = 0
    with_end_of_turn: int = 0
    # per input example, kept or not: (tokens, label tokens, truncated, end-of-turn token trained)
    examples: list[tuple[int, int, bool, bool]] = field(default_factory=list)

    def drop(self, reason: str) -> None:
        self.dropped[reason] = self.dropped.get(reason, 0) + 1


@dataclass
class ChatTokenizer:
    """Renders and tokenizes conversations with response-only labels."""

    tokenizer: Any
    max_length: int
    system_prompt: str | None = None
    train_on_prompts: bool = False

    def __post_init__(self) -> None:
        self.end_of_turn, self.append_end_of_turn = end_of_turn_marker(self.tokenizer)
        ids = self.tokenizer.encode(self.end_of_turn, add_special_tokens=False) if self.end_of_turn else []
        self.end_of_turn_id = ids[0] if len(ids) == 1 else None

    def with_system(self, messages: list[dict[str, str]]) -> list[dict[str, str]]:
        if self.system_prompt and messages[0]["role"] != "system":
            return [{"role": "system", "content": self.system_prompt}, *messages]
        return messages

    def render(self, conversations: list[list[dict[str, str]]]) -> list[tuple[str, list[tuple[int, int]]] | None]:
        """Each conversation's text and the character spans the loss is computed on (None: no match)."""
        texts = self.tokenizer.apply_chat_template(conversations, tokenize=False)
        return [self._locate(text, messages) for text, messages in zip(texts, conversations, strict=True)]

    def _locate(self, text: str, messages: list[dict[str, str]]) -> tuple[str, list[tuple[int, int]]] | None:
        spans: list[tuple[int, int]] = []
        position = 0
        for message in messages:
            content = message["content"]
            start = text.find(content, position)
            if start < 0:
                content = content.strip()  # some templates trim message content
                start = text.find(content, position)
                if start < 0:
                    return None
            end = start + len(content)
            if message["role"] == "assistant":
                if self.append_end_of_turn:
                    text = text[:end] + self.end_of_turn + text[end:]
                    end += len(self.end_of_turn)
                elif text.startswith(self.end_of_turn, end):
                    end += len(self.end_of_turn)
                else:
                    stripped = text[end:].lstrip()
                    if stripped.startswith(self.end_of_turn):
                        end = len(text) - len(stripped) + len(self.end_of_turn)
                spans.append((start, end))
            position = end
        if self.train_on_prompts:
            spans = [(0, len(text))]
        return text, spans

    def __call__(self, conversations: list[list[dict[str, str]]]) -> TokenizedBatch:
        batch = TokenizedBatch()
        rendered = self.render([self.with_system(messages) for messages in conversations])
        texts = [item[0] for item in rendered if item is not None]
        encoded = (
            self.tokenizer(texts, add_special_tokens=False, return_offsets_mapping=True, return_attention_mask=False)
            if texts else {"input_ids": [], "offset_mapping": []}
        )
        tokens = iter(zip(encoded["input_ids"], encoded["offset_mapping"], strict=True))
        for item in rendered:
            if item is None:
                batch.drop("tokenize.template_mismatch")
                batch.examples.append((0, 0, False, False))
                continue
            ids, offsets = next(tokens)
            labels = response_labels(ids, offsets, item[1])
            truncated = len(ids) > self.max_length
            if truncated:
                batch.truncated += 1
                ids, labels = ids[: self.max_length], labels[: self.max_length]
            trained = sum(1 for label in labels if label != IGNORE_INDEX)
            end_of_turn = self.end_of_turn_id is not None and self.end_of_turn_id in labels
            batch.examples.append((len(ids), trained, truncated, end_of_turn))
            if trained == 0:
                batch.drop("tokenize.no_trainable_tokens")
                continue
            batch.with_end_of_turn += end_of_turn
            batch.input_ids.append(list(ids))
            batch.labels.append(labels)
        return batch


def response_labels(ids: list[int], offsets: list[tuple[int, int]], spans: list[tuple[int, int]]) -> list[int]:
    """Token ids where a token overlaps a trained span, IGNORE_INDEX elsewhere."""
    if not ids:
        return []
    bounds = np.asarray(offsets, dtype=np.int64)
    trained = np.zeros(len(ids), dtype=bool)
    for start, end in spans:
        trained |= (bounds[:, 0] < end) & (bounds[:, 1] > start)
    return np.where(trained, np.asarray(ids, dtype=np.int64), IGNORE_INDEX).tolist()


def prompt_messages(messages: list[dict[str, str]]) -> list[dict[str, str]]:
    """The conversation up to (not including) its last assistant message: what a model is asked."""
    last = max(index for index, message in enumerate(messages) if message["role"] == "assistant")
    return messages[:last]
