"""Chat-template rendering and response-only label masks, computed for a whole batch at once.

A batch of conversations is rendered with the chat template, tokenized in one parallel call with character
offsets, and a token is labelled when its characters fall inside an assistant message or the end-of-turn
marker after it (so the model learns to stop). Templates that only paste message contents between fixed
text (most ChatML-style ones) are rendered once per role sequence and filled in, instead of running Jinja
per conversation; see `chat_skeletons`.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa

from adapterflow.core.errors import AdapterflowError
from adapterflow.core.hashing import sha256_json
from adapterflow.data.text import flat_messages
from adapterflow.tokenization.segments import SegmentEncoder
from adapterflow.tokenization.templates import TemplateRenderer

IGNORE_INDEX = -100
CHATML_TEMPLATE = (
    "{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n' }}"
    "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)


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


@dataclass
class TokenizedBatch:
    """Kept examples as flat token ids and labels with per-example offsets, and per-input statistics."""

    ids: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int32))
    labels: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int32))
    offsets: np.ndarray = field(default_factory=lambda: np.zeros(1, np.int64))
    dropped: dict[str, int] = field(default_factory=dict)
    # per input example, kept or not
    length: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int32))  # tokens before any cut
    tokens: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int32))  # tokens after the cut
    label_tokens: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int32))
    overlong: np.ndarray = field(default_factory=lambda: np.zeros(0, bool))  # longer than max_length
    truncated: np.ndarray = field(default_factory=lambda: np.zeros(0, bool))  # over-long and cut (not dropped)
    end_of_turn: np.ndarray = field(default_factory=lambda: np.zeros(0, bool))
    kept: np.ndarray = field(default_factory=lambda: np.zeros(0, bool))  # written for training

    @classmethod
    def empty(cls, count: int) -> TokenizedBatch:
        """No kept examples yet, and zeroed statistics for `count` inputs."""
        return cls(length=np.zeros(count, np.int32), tokens=np.zeros(count, np.int32),
                   label_tokens=np.zeros(count, np.int32), overlong=np.zeros(count, bool),
                   truncated=np.zeros(count, bool), end_of_turn=np.zeros(count, bool), kept=np.zeros(count, bool))

    @property
    def rows(self) -> int:
        """Examples kept for training."""
        return len(self.offsets) - 1

    def example(self, index: int) -> tuple[list[int], list[int]]:
        start, end = self.offsets[index], self.offsets[index + 1]
        return self.ids[start:end].tolist(), self.labels[start:end].tolist()


def kept_and_dropped(useful: np.ndarray, overlong: np.ndarray, drop_overlong: bool,
                     reason: str) -> tuple[np.ndarray, dict[str, int]]:
    """Which examples are kept, and how many were dropped for each reason.

    With `drop_overlong` an over-long example counts as `tokenize.overlong` only; the other examples with
    nothing to learn count under `reason`.
    """
    too_long = overlong & drop_overlong
    kept = useful & ~too_long
    counts = {"tokenize.overlong": int(too_long.sum()), reason: int((~useful & ~too_long).sum())}
    return kept, {name: count for name, count in counts.items() if count}


@dataclass
class ChatTokenizer:
    """Renders and tokenizes conversations with response-only labels."""

    tokenizer: Any
    max_length: int
    system_prompt: str | None = None
    train_on_prompts: bool = False
    drop_overlong: bool = False  # tokenize.overlong: drop (else truncate)

    def __post_init__(self) -> None:
        self.renderer = TemplateRenderer(self.tokenizer)
        ids = self.tokenizer.encode(self.renderer.end_of_turn, add_special_tokens=False) if self.renderer.end_of_turn else []
        self.end_of_turn_id = ids[0] if len(ids) == 1 else -1
        self.segments = SegmentEncoder(self.tokenizer, self.renderer, self.system_prompt)

    def __call__(self, conversations: list[list[dict[str, str]]]) -> TokenizedBatch:
        """Tokenize conversations given as lists of {"role", "content"} messages."""
        from adapterflow.data.tables import MESSAGE

        rows = [[{"role": m["role"], "content": m["content"]} for m in conv] for conv in conversations]
        return self.tokenize_messages(pa.array(rows, pa.list_(MESSAGE)))

    def tokenize_messages(self, messages: pa.ListArray) -> TokenizedBatch:
        """Tokenize a column of canonical `messages`: piece by piece where exact, else whole texts."""
        if not self.train_on_prompts:
            pieces = self.segments.encode_messages(messages)
            if pieces is not None:
                batch = TokenizedBatch.empty(len(messages))
                self._keep(batch, *pieces, np.arange(len(messages)))
                return batch
        offsets, structs = flat_messages(messages)
        roles, contents = structs.field("role").to_pylist(), structs.field("content").to_pylist()
        bounds = offsets.tolist()
        return self.tokenize_parts([(tuple(roles[a:b]), contents[a:b]) for a, b in itertools.pairwise(bounds)])

    def tokenize_parts(self, conversations: list[tuple[tuple[str, ...], list[str]]]) -> TokenizedBatch:
        """Tokenize (roles, contents) conversations as whole rendered texts."""
        conversations = [self._with_system(roles, contents) for roles, contents in conversations]
        return self.encode([self.renderer.render(roles, contents) for roles, contents in conversations])

    def _with_system(self, roles: tuple[str, ...], contents: list[str]) -> tuple[tuple[str, ...], list[str]]:
        if self.system_prompt and roles[0] != "system":
            return ("system", *roles), [self.system_prompt, *contents]
        return roles, contents

    def encode(self, rendered: list[tuple[str, list[tuple[int, int]]] | None]) -> TokenizedBatch:
        """Tokenize rendered conversations in one parallel call and label their trained spans."""
        batch = TokenizedBatch.empty(len(rendered))
        matched = [item for item in rendered if item is not None]
        mismatched = len(rendered) - len(matched)
        if mismatched:
            batch.dropped["tokenize.template_mismatch"] = mismatched
        if not matched:
            return batch
        texts = [text for text, _ in matched]
        encodings = self.tokenizer.backend_tokenizer.encode_batch(texts, add_special_tokens=False)
        lengths = np.fromiter((len(encoding) for encoding in encodings), np.int64, len(encodings))
        ids = np.fromiter(itertools.chain.from_iterable(e.ids for e in encodings), np.int32, int(lengths.sum()))
        spans = [[(0, len(text))] for text in texts] if self.train_on_prompts else [item[1] for item in matched]
        trained = trained_tokens(encodings, lengths, spans)
        labels = np.where(trained, ids, IGNORE_INDEX).astype(np.int32)
        self._keep(batch, ids, labels, lengths, np.flatnonzero([item is not None for item in rendered]))
        return batch

    def _keep(self, batch: TokenizedBatch, ids: np.ndarray, labels: np.ndarray, lengths: np.ndarray,
              positions: np.ndarray) -> None:
        """Cut to max_length, compute per-example statistics, keep the examples with something to learn
        (with drop_overlong: only those that fit whole)."""
        example = np.repeat(np.arange(len(lengths)), lengths)
        rank = np.arange(len(ids)) - np.repeat(np.concatenate([[0], np.cumsum(lengths)[:-1]]), lengths)
        inside = rank < self.max_length
        ids, labels, example = ids[inside], labels[inside], example[inside]
        kept_lengths = np.minimum(lengths, self.max_length)
        trained = labels != IGNORE_INDEX
        label_counts = np.bincount(example[trained], minlength=len(lengths))
        eot = np.bincount(example[trained & (ids == self.end_of_turn_id)], minlength=len(lengths)) > 0
        overlong = lengths > self.max_length
        kept, dropped = kept_and_dropped(label_counts > 0, overlong, self.drop_overlong, "tokenize.no_trainable_tokens")
        batch.length[positions] = lengths
        batch.tokens[positions] = kept_lengths
        batch.label_tokens[positions] = label_counts
        batch.overlong[positions] = overlong
        batch.truncated[positions] = overlong & ~self.drop_overlong
        batch.end_of_turn[positions] = eot
        batch.kept[positions] = kept
        batch.dropped.update(dropped)
        keep_tokens = kept[example]
        batch.ids, batch.labels = ids[keep_tokens], labels[keep_tokens]
        batch.offsets = np.concatenate([[0], np.cumsum(kept_lengths[kept])]).astype(np.int64)


def trained_tokens(encodings: list[Any], lengths: np.ndarray, spans: list[list[tuple[int, int]]]) -> np.ndarray:
    """True for each token (flat over all encodings) that holds a character of a trained span.

    Spans become token ranges through the tokenizer's own character-to-token map (two lookups per span,
    not a comparison per token), then one cumulative sum over +1/-1 marks labels every token inside.
    """
    bases = np.concatenate([[0], np.cumsum(lengths)[:-1]]).astype(np.int64)
    marks = np.zeros(int(lengths.sum()) + 1, np.int32)
    for base, encoding, text_spans in zip(bases.tolist(), encodings, spans, strict=True):
        for start, end in text_spans:
            first, last = _token_at(encoding, start, end, 1), _token_at(encoding, end - 1, start - 1, -1)
            if first is not None and last is not None and first <= last:
                marks[base + first] += 1
                marks[base + last + 1] -= 1
    return np.cumsum(marks[:-1]) > 0


def _token_at(encoding: Any, position: int, stop: int, step: int) -> int | None:
    """The token holding the character at `position`, looking further in `step` direction past unmapped
    characters (some normalisers drop characters) until `stop`."""
    while position != stop:
        token = encoding.char_to_token(position)
        if token is not None:
            return token
        position += step
    return None


def prompt_messages(messages: list[dict[str, str]]) -> list[dict[str, str]]:
    """The conversation up to (not including) its last assistant message: what a model is asked."""
    last = max(index for index, message in enumerate(messages) if message["role"] == "assistant")
    return messages[:last]
