"""Train/eval leakage: eval examples that repeat a training example, exactly or nearly.

An eval example the model has trained on measures memory, not generalisation; such rows leave eval. The
whole example counts (question and answer, prompt and completion, text and label): templated questions
("Summarise the <desk> position for <firm> as of <month>") with different answers are different examples
and stay in eval. A near leak must also repeat the training example's answer: a long shared prompt (a
system message, a context document) can make two examples alike as wholes while their answers differ.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from adapterflow.data.minhash import jaccard, shingle_hashes, word_hashes
from adapterflow.data.near_dedup import pair_jaccard
from adapterflow.data.scan import TableScan, read_group
from adapterflow.data.tables import open_parquet
from adapterflow.data.text import prompts_and_responses

BUCKET_CHECKS = 8  # training rows compared per shared LSH bucket
PairFilter = Callable[[np.ndarray], np.ndarray]  # (train row, eval row) pairs -> which to keep


@dataclass
class Leaks:
    """Per eval row: leaked exactly, leaked nearly, and the training row it resembles (-1: none)."""

    exact: np.ndarray
    near: np.ndarray
    train_row: np.ndarray
    similarity: np.ndarray


def find_leaks(train: TableScan, held_out: TableScan, threshold: float, confirm: PairFilter | None = None) -> Leaks:
    """Compare every eval row's keys with the training rows' keys; verify near matches by exact Jaccard
    similarity, then by `confirm` (e.g. `answers_match`) when given."""
    count = len(held_out.exact_keys)
    train_row = np.full(count, -1, np.int64)
    similarity = np.zeros(count)
    exact = _rows_in(held_out.exact_keys, train.exact_keys)
    train_row[exact >= 0] = exact[exact >= 0]
    similarity[exact >= 0] = 1.0
    near = np.zeros(count, bool)
    if held_out.band_keys is not None and len(train.exact_keys):
        pairs = _bucket_pairs(train, held_out, exact < 0)
        if len(pairs):
            offset = len(train.exact_keys)

            def shingles_of(row: int) -> np.ndarray:
                return train.shingles(row) if row < offset else held_out.shingles(row - offset)

            scores = pair_jaccard(np.stack([pairs[:, 0], pairs[:, 1] + offset], axis=1), shingles_of)
            close = scores >= threshold
            pairs, scores = pairs[close], scores[close]
            if confirm is not None and len(pairs):
                confirmed = confirm(pairs)
                pairs, scores = pairs[confirmed], scores[confirmed]
            for (train_index, eval_index), score in zip(pairs.tolist(), scores.tolist(), strict=True):
                if score > similarity[eval_index]:
                    near[eval_index], train_row[eval_index], similarity[eval_index] = True, train_index, score
    return Leaks(exact=exact >= 0, near=near, train_row=train_row, similarity=similarity)


def answers_match(train_path: str, eval_path: str, shingle_size: int, threshold: float) -> PairFilter:
    """A `confirm` for `find_leaks`: keep the pairs whose answers' word shingles reach `threshold` Jaccard
    similarity. Answers are read only for the rows of the pairs given (few: those alike as whole examples)."""

    def confirm(pairs: np.ndarray) -> np.ndarray:
        train_answers = answer_shingles(train_path, np.unique(pairs[:, 0]), shingle_size)
        eval_answers = answer_shingles(eval_path, np.unique(pairs[:, 1]), shingle_size)
        return np.array([jaccard(train_answers[a], eval_answers[b]) >= threshold for a, b in pairs.tolist()], bool)

    return confirm


def answer_shingles(path: str, rows: np.ndarray, shingle_size: int) -> dict[int, frozenset]:
    """Per wanted row of a canonical table, the shingle hashes of its folded answer (for raw text, the text)."""
    metadata = open_parquet(path).metadata
    starts = np.cumsum([0] + [metadata.row_group(i).num_rows for i in range(metadata.num_row_groups)])
    found: dict[int, frozenset] = {}
    for group in np.unique(np.searchsorted(starts, rows, side="right") - 1).tolist():
        wanted = rows[(rows >= starts[group]) & (rows < starts[group + 1])]
        batch = read_group(path, group).take(pa.array(wanted - starts[group]))
        shingles, offsets = shingle_hashes(word_hashes(pc.utf8_lower(prompts_and_responses(batch)[1])), shingle_size)
        for index, row in enumerate(wanted.tolist()):
            found[row] = frozenset(shingles[offsets[index] : offsets[index + 1]].tolist())
    return found


def _rows_in(keys: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """For each key, the first reference row with an equal key, or -1."""
    if len(reference) == 0 or len(keys) == 0:
        return np.full(len(keys), -1, np.int64)
    packed_reference = reference.view([("a", np.uint64), ("b", np.uint64)]).ravel()
    order = np.argsort(packed_reference, kind="stable")
    packed = keys.view([("a", np.uint64), ("b", np.uint64)]).ravel()
    position = np.searchsorted(packed_reference[order], packed)
    position = np.minimum(position, len(order) - 1)
    found = packed_reference[order][position] == packed
    return np.where(found, order[position], -1)


def _bucket_pairs(train: TableScan, held_out: TableScan, candidates: np.ndarray) -> np.ndarray:
    """(train row, eval row) pairs sharing an LSH bucket, at most BUCKET_CHECKS train rows per bucket."""
    usable_train = np.flatnonzero(train.has_shingles)
    usable_eval = np.flatnonzero(held_out.has_shingles & candidates)
    found = []
    for band in range(train.band_keys.shape[1]):
        order = usable_train[np.argsort(train.band_keys[usable_train, band], kind="stable")]
        sorted_keys = train.band_keys[order, band]
        wanted = held_out.band_keys[usable_eval, band]
        start = np.searchsorted(sorted_keys, wanted, side="left")
        end = np.searchsorted(sorted_keys, wanted, side="right")
        for offset in range(BUCKET_CHECKS):
            hit = start + offset < end
            found.append(np.stack([order[start[hit] + offset], usable_eval[hit]], axis=1))
    pairs = np.concatenate(found) if found else np.zeros((0, 2), np.int64)
    return np.unique(pairs, axis=0) if len(pairs) else pairs
