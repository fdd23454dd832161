"""Train/eval leakage: eval rows whose prompt repeats a training prompt, exactly or nearly.

An eval question the model has trained on measures memory, not generalisation; such rows leave eval.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from adapterflow.data.near_dedup import pair_jaccard
from adapterflow.data.scan import TableScan

BUCKET_CHECKS = 8  # training rows compared per shared LSH bucket


@dataclass
class Leaks:
    """Per eval row: leaked exactly, leaked nearly, and the training row it resembles (-1: none)."""

    exact: np.ndarray
    near: np.ndarray
    train_row: np.ndarray
    similarity: np.ndarray


def find_leaks(train: TableScan, held_out: TableScan, threshold: float) -> Leaks:
    """Compare every eval row's keys with the training rows' keys; verify near matches exactly."""
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
            for (train_index, eval_index), score in zip(pairs.tolist(), scores.tolist(), strict=True):
                if score >= threshold and score > similarity[eval_index]:
                    near[eval_index], train_row[eval_index], similarity[eval_index] = True, train_index, score
    return Leaks(exact=exact >= 0, near=near, train_row=train_row, similarity=similarity)


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
