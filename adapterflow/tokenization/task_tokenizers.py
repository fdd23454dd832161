"""Tokenization for the other task types: continued pre-training on raw text and sequence classification.

Both return the same `TokenizedBatch` as chat tokenization, so caching, statistics and the datasets are shared.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Any

import numpy as np

from adapterflow.tokenization.chat import TokenizedBatch, kept_and_dropped

MIN_CHUNK_TOKENS = 2  # a chunk needs at least one next-token target


@dataclass
class TextTokenizer:
    """Raw text for continued pre-training: every token is a label, each document ends with the end-of-sequence
    token, and long documents are cut into consecutive chunks of max_length (nothing is thrown away, so no
    document is over-long)."""

    tokenizer: Any
    max_length: int

    def __call__(self, texts: list[str]) -> TokenizedBatch:
        eos = self.tokenizer.eos_token_id
        encodings = self.tokenizer.backend_tokenizer.encode_batch(texts, add_special_tokens=True)
        documents = [e.ids + [eos] if eos is not None and (not e.ids or e.ids[-1] != eos) else e.ids for e in encodings]
        chunks = [doc[start:start + self.max_length] for doc in documents for start in range(0, len(doc), self.max_length)]
        kept = [chunk for chunk in chunks if len(chunk) >= MIN_CHUNK_TOKENS]
        lengths = np.fromiter((len(doc) for doc in documents), np.int32, len(documents))
        ids = np.fromiter(itertools.chain.from_iterable(kept), np.int32, sum(map(len, kept)))
        batch = TokenizedBatch(
            ids=ids, labels=ids.copy(),
            offsets=np.concatenate([[0], np.cumsum([len(chunk) for chunk in kept])]).astype(np.int64),
            length=lengths, tokens=lengths, label_tokens=lengths.copy(), overlong=np.zeros(len(texts), bool),
            truncated=np.zeros(len(texts), bool), end_of_turn=np.array([bool(doc) and doc[-1] == eos for doc in documents]),
            kept=lengths >= MIN_CHUNK_TOKENS,
        )
        if len(kept) < len(chunks):
            batch.dropped["tokenize.too_short"] = len(chunks) - len(kept)
        return batch


@dataclass
class ClassificationTokenizer:
    """Text and label for sequence classification: ids with the model's special tokens, cut to max_length
    (keeping the closing special token) or dropped when over-long with drop_overlong, and one label, the class
    index, per example."""

    tokenizer: Any
    max_length: int
    label_ids: dict[str, int]
    drop_overlong: bool = False  # tokenize.overlong: drop (else truncate)

    def __call__(self, texts: list[str], labels: list[str]) -> TokenizedBatch:
        encodings = self.tokenizer.backend_tokenizer.encode_batch(texts, add_special_tokens=True)
        known = np.array([label in self.label_ids for label in labels], bool)
        lengths = np.array([len(e.ids) for e in encodings], np.int32)
        overlong = lengths > self.max_length
        kept, dropped = kept_and_dropped(known, overlong, self.drop_overlong, "tokenize.unseen_label")
        rows = [e.ids if len(e.ids) <= self.max_length else e.ids[: self.max_length - 1] + e.ids[-1:]
                for e, keep in zip(encodings, kept, strict=True) if keep]
        row_lengths = np.array([len(ids) for ids in rows], np.int64)
        return TokenizedBatch(
            ids=np.fromiter(itertools.chain.from_iterable(rows), np.int32, int(row_lengths.sum())),
            labels=np.array([self.label_ids[label] for label, keep in zip(labels, kept, strict=True) if keep], np.int32),
            offsets=np.concatenate([[0], np.cumsum(row_lengths)]).astype(np.int64), dropped=dropped,
            length=lengths, tokens=np.minimum(lengths, self.max_length), label_tokens=known.astype(np.int32),
            overlong=overlong, truncated=overlong & ~self.drop_overlong, end_of_turn=np.zeros(len(texts), bool),
            kept=kept,
        )
