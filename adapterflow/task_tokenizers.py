"""Tokenization for the other task types: continued pre-training on raw text and sequence classification.

Both return the same `TokenizedBatch` as chat tokenization, so caching, statistics and the datasets are shared.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Any

import numpy as np

from adapterflow.tokenization import TokenizedBatch

MIN_CHUNK_TOKENS = 2  # a chunk needs at least one next-token target


@dataclass
class TextTokenizer:
    """Raw text for continued pre-training: every token is a label, each document ends with the end-of-sequence
    token, and long documents are cut into consecutive chunks of max_length (nothing is thrown away)."""

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
            tokens=lengths, label_tokens=lengths.copy(), truncated=np.zeros(len(texts), bool),
            end_of_turn=np.array([bool(doc) and doc[-1] == eos for doc in documents]),
        )
        if len(kept) < len(chunks):
            batch.dropped["tokenize.too_short"] = len(chunks) - len(kept)
        return batch


@dataclass
class ClassificationTokenizer:
    """Text and label for sequence classification: ids with the model's special tokens, cut to max_length
    (keeping the closing special token), and one label, the class index, per example."""

    tokenizer: Any
    max_length: int
    label_ids: dict[str, int]

    def __call__(self, texts: list[str], labels: list[str]) -> TokenizedBatch:
        encodings = self.tokenizer.backend_tokenizer.encode_batch(texts, add_special_tokens=True)
        known = np.array([label in self.label_ids for label in labels], bool)
        truncated = np.array([len(e.ids) > self.max_length for e in encodings])
        kept = [e.ids if len(e.ids) <= self.max_length else e.ids[: self.max_length - 1] + e.ids[-1:]
                for e, ok in zip(encodings, known, strict=True) if ok]
        lengths = np.array([len(ids) for ids in kept], np.int64)
        batch = TokenizedBatch(
            ids=np.fromiter(itertools.chain.from_iterable(kept), np.int32, int(lengths.sum())),
            labels=np.array([self.label_ids[label] for label, ok in zip(labels, known, strict=True) if ok], np.int32),
            offsets=np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64),
            tokens=np.array([min(len(e.ids), self.max_length) for e in encodings], np.int32),
            label_tokens=known.astype(np.int32), truncated=truncated, end_of_turn=np.zeros(len(texts), bool),
        )
        if (~known).any():
            batch.dropped["tokenize.unseen_label"] = int((~known).sum())
        return batch
