"""Near-duplicate detection: LSH candidates verified by exact Jaccard, resolved to deterministic representatives.

Resolution runs in row order: a row is removed when its exact Jaccard similarity to a row kept before it
reaches the threshold, and that earlier row is its representative. So every removed row is directly similar
to the row that stays, and the result does not depend on hash-table iteration order.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from adapterflow.data.minhash import LshBands, jaccard, mix64


@dataclass(frozen=True)
class NearDedupSettings:
    threshold: float = 0.8
    shingle_size: int = 5
    num_perm: int = 64
    seed: int = 1

    @property
    def lsh(self) -> LshBands:
        return LshBands.for_threshold(self.threshold, self.num_perm)


@dataclass
class NearDuplicates:
    """Which rows are near duplicates of an earlier kept row, and of which one."""

    removed: np.ndarray
    representative: np.ndarray
    candidate_pairs: int
    verified_pairs: int
    similarity: dict[int, float] = field(default_factory=dict)

    @property
    def count(self) -> int:
        return int(self.removed.sum())

    def clusters(self, limit: int) -> list[dict]:
        """The largest clusters: the kept row and the rows removed for it, with their similarity."""
        groups: dict[int, list[int]] = {}
        for row in np.flatnonzero(self.removed):
            groups.setdefault(int(self.representative[row]), []).append(int(row))
        ordered = sorted(groups.items(), key=lambda item: (-len(item[1]), item[0]))[:limit]
        return [{"kept": kept, "removed": members, "jaccard": [round(self.similarity[m], 3) for m in members]}
                for kept, members in ordered]


def candidate_pairs(keys: np.ndarray, usable: np.ndarray) -> np.ndarray:
    """(leader, member) pairs, sorted by member: each row with the first (lowest) row of every LSH bucket
    it shares with an earlier row.

    Comparing each row with its buckets' first rows, not with every bucket member, keeps the work linear
    when many rows share a bucket.
    """
    rows = np.flatnonzero(usable)
    found = []
    for band in range(keys.shape[1]):
        band_rows = rows[np.argsort(keys[rows, band])]
        sorted_keys = keys[band_rows, band]
        starts = np.flatnonzero(np.concatenate([[True], sorted_keys[1:] != sorted_keys[:-1]]))
        run_of = np.repeat(np.arange(len(starts)), np.diff(np.append(starts, len(band_rows))))
        leaders = np.minimum.reduceat(band_rows, starts)[run_of] if len(starts) else band_rows
        followers = band_rows != leaders
        found.append(np.stack([leaders[followers], band_rows[followers]], axis=1))
    pairs = np.concatenate(found) if found else np.zeros((0, 2), np.int64)
    count = np.int64(len(keys))
    codes = np.unique(pairs[:, 1] * count + pairs[:, 0])  # sorted by member, then leader
    return np.stack([codes % count, codes // count], axis=1)


VALUE_BITS = np.uint64(40)
VALUE_MASK = np.uint64((1 << 40) - 1)
PAIR_CHUNK = 1 << 15  # pairs per vectorised batch; must stay below 2^24 (the tag width)


def _tagged_sort(tags: np.ndarray, values: np.ndarray) -> np.ndarray:
    """Sort (tag, 40-bit value) pairs packed into one uint64: one radix-friendly sort instead of a lexsort."""
    return np.sort((tags.astype(np.uint64) << VALUE_BITS) | (values & VALUE_MASK))


def pair_jaccard(pairs: np.ndarray, shingles_of: Callable[[int], np.ndarray]) -> np.ndarray:
    """Exact Jaccard similarity of every (a, b) pair, in a few vectorised passes per chunk of pairs.

    Shingle hashes are folded to 40 bits and packed next to a 24-bit tag (a row, then a pair), so one sort
    both deduplicates each row's shingles and lines up the shingles two rows share. A false match inside
    one pair has odds of about 1e-8. Chunks bound the memory: ~50 MB per array at PAIR_CHUNK pairs.
    """
    result = np.zeros(len(pairs))
    for begin in range(0, len(pairs), PAIR_CHUNK):
        result[begin : begin + PAIR_CHUNK] = _chunk_jaccard(pairs[begin : begin + PAIR_CHUNK], shingles_of)
    return result


def _chunk_jaccard(pairs: np.ndarray, shingles_of: Callable[[int], np.ndarray]) -> np.ndarray:
    rows, index = np.unique(pairs, return_inverse=True)
    index = index.reshape(pairs.shape)
    raw = [shingles_of(int(row)) for row in rows]
    tags = np.repeat(np.arange(len(raw)), [len(values) for values in raw])
    # mixed before folding to 40 bits, so that any input (not only uniform hashes) keeps its distinct values
    packed = _tagged_sort(tags, mix64(np.concatenate(raw)) >> np.uint64(24) if raw else np.zeros(0, np.uint64))
    distinct = packed[np.concatenate([[True], packed[1:] != packed[:-1]])] if len(packed) else packed
    sizes = np.bincount((distinct >> VALUE_BITS).astype(np.int64), minlength=len(raw))
    starts = np.concatenate([[0], np.cumsum(sizes)[:-1]])
    tags, values = [], []
    for column in range(2):
        lengths = sizes[index[:, column]]
        tags.append(np.repeat(np.arange(len(index)), lengths))
        values.append(distinct[np.repeat(starts[index[:, column]], lengths) + _ranks(lengths)])
    merged = _tagged_sort(np.concatenate(tags), np.concatenate(values))
    repeated = merged[1:] == merged[:-1]
    shared = np.bincount((merged[1:][repeated] >> VALUE_BITS).astype(np.int64), minlength=len(index))
    union = sizes[index[:, 0]] + sizes[index[:, 1]] - shared
    return np.where(union > 0, shared / np.maximum(union, 1), 1.0)


def _ranks(counts: np.ndarray) -> np.ndarray:
    total = int(counts.sum())
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    return np.arange(total, dtype=np.int64) - np.repeat(starts, counts)


def resolve_near_duplicates(
    keys: np.ndarray, usable: np.ndarray, shingles_of: Callable[[int], np.ndarray], threshold: float
) -> NearDuplicates:
    """Walk rows in order; remove a row whose exact similarity to a kept earlier candidate reaches the threshold."""
    count = len(keys)
    pairs = candidate_pairs(keys, usable)
    known = dict(zip(map(tuple, pairs.tolist()), pair_jaccard(pairs, shingles_of).tolist(), strict=True))
    representative = list(range(count))
    removed = np.zeros(count, bool)
    similarity: dict[int, float] = {}
    for leader, member in pairs.tolist():
        if removed[member]:
            continue  # an earlier leader of this row already matched
        kept = representative[leader]  # a removed leader stands for the row that was kept for it
        pair = (kept, member)
        if pair not in known:  # rare: the leader itself was removed earlier
            known[pair] = jaccard(frozenset(shingles_of(kept).tolist()), frozenset(shingles_of(member).tolist()))
        if known[pair] >= threshold:
            removed[member], representative[member] = True, kept
            similarity[member] = known[pair]
    return NearDuplicates(removed, np.array(representative), len(pairs), len(known), similarity)
