"""Vectorised MinHash over word shingles: one-permutation hashing with rotation densification, and LSH bands.

Classic MinHash hashes every shingle once per permutation (64-128 passes). One-permutation hashing (Li et
al. 2012) hashes each shingle once, splits the hash range into `num_perm` bins and keeps the minimum per bin;
empty bins borrow from the next filled bin (Shrivastava and Li 2014), so two documents agree in a bin with
probability close to their Jaccard similarity. Here it runs as a handful of numpy passes per batch.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import xxhash

EMPTY = np.uint64(np.iinfo(np.uint64).max)
MASK32 = np.uint64(0xFFFFFFFF)
# Odd 64-bit multipliers: position weights of words in a shingle, and of values in a band.
MULTIPLIERS = np.array(
    [0x9E3779B97F4A7C15, 0xBF58476D1CE4E5B9, 0x94D049BB133111EB, 0xD6E8FEB86659FD93, 0xA0761D6478BD642F,
     0xE7037ED1A0B428DB, 0x8EBC6AF09C88C6E3, 0x589965CC75374CC3, 0x1D8E4E27C47D124F, 0xC2B2AE3D27D4EB4F,
     0x165667B19E3779F9, 0x27D4EB2F165667C5, 0x85EBCA77C2B2AE63, 0xFF51AFD7ED558CCD, 0xC4CEB9FE1A85EC53,
     0x2545F4914F6CDD1D],
    dtype=np.uint64,
)
DENSIFY_STEP = np.uint64(0x9E3779B97F4A7C15)


def mix64(values: np.ndarray) -> np.ndarray:
    """SplitMix64 finaliser: spreads every input bit over the whole word."""
    values = values ^ (values >> np.uint64(30))
    values = values * np.uint64(0xBF58476D1CE4E5B9)
    values = values ^ (values >> np.uint64(27))
    values = values * np.uint64(0x94D049BB133111EB)
    return values ^ (values >> np.uint64(31))


def word_hashes(folded: pa.Array) -> tuple[np.ndarray, np.ndarray]:
    """64-bit hashes of every word of every text, flat, with per-text offsets (len(texts) + 1).

    Texts are expected lower-cased and normalised (NFKC maps exotic spaces to ASCII ones), so splitting on
    ASCII whitespace finds the words.
    """
    words = pc.ascii_split_whitespace(folded)
    offsets = words.offsets.to_numpy().astype(np.int64)
    offsets -= offsets[0]
    flat = words.flatten()
    present = pc.greater(pc.utf8_length(flat), 0)
    if pc.sum(pc.invert(present)).as_py():  # Arrow yields "" for leading/trailing whitespace and empty texts
        parents = pc.list_parent_indices(words).to_numpy()[present.to_numpy(zero_copy_only=False)]
        offsets = np.concatenate([[0], np.cumsum(np.bincount(parents, minlength=len(words)))]).astype(np.int64)
        flat = pc.filter(flat, present)
    if len(flat) == 0:
        return np.empty(0, np.uint64), offsets
    encoded = pc.dictionary_encode(flat)
    vocabulary = np.fromiter(
        (xxhash.xxh3_64_intdigest(word) for word in encoded.dictionary.cast(pa.binary()).to_pylist()),
        dtype=np.uint64, count=len(encoded.dictionary),
    )
    return vocabulary[encoded.indices.to_numpy()], offsets


def text_keys(words: np.ndarray, offsets: np.ndarray) -> np.ndarray:
    """(texts, 2) 128-bit keys of each text's word sequence: equal exactly when the folded texts are equal.

    Each column is a sum of word hashes weighted by an affine function of the word's position, so the
    order of words counts; word hashes are pseudo-random, so unequal texts collide with chance ~2^-64.
    """
    lengths = np.diff(offsets)
    ranks = _ranks(lengths).astype(np.uint64)
    keys = np.zeros((len(lengths), 2), np.uint64)
    nonempty = np.flatnonzero(lengths > 0)
    if len(nonempty):
        for column in range(2):
            weights = ranks * MULTIPLIERS[2 * column] + MULTIPLIERS[2 * column + 1]
            sums = np.add.reduceat(words * weights, offsets[nonempty])
            keys[nonempty, column] = mix64(sums + lengths[nonempty].astype(np.uint64))
    return keys


def shingle_hashes(text_words: tuple[np.ndarray, np.ndarray], size: int) -> tuple[np.ndarray, np.ndarray]:
    """Hashes of the word `size`-grams of each text (a shorter text gives one shingle of all its words).

    `text_words` is what `word_hashes` returns: flat word hashes and per-text offsets.
    """
    words, offsets = text_words
    lengths = np.diff(offsets)
    full = lengths >= size
    # Every window of `size` consecutive words in the flat array, then only those inside one text.
    windows = max(len(words) - size + 1, 0)
    combined = np.zeros(windows, np.uint64)
    for position in range(size):
        combined += words[position : position + windows] * MULTIPLIERS[position]
    per_text = np.where(full, lengths - size + 1, 0)
    window_starts = np.repeat(offsets[:-1], per_text) + _ranks(per_text)
    shingles = combined[window_starts]
    short = np.flatnonzero(~full & (lengths > 0))
    if len(short):  # texts shorter than a shingle: one shingle of all their words, placed in text order
        short_hashes = np.array([(words[offsets[i] : offsets[i + 1]] * MULTIPLIERS[: lengths[i]]).sum(dtype=np.uint64)
                                 for i in short], dtype=np.uint64)
        counts = per_text.copy()
        counts[short] = 1
        merged = np.empty(int(counts.sum()), np.uint64)
        starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
        is_short = np.zeros(len(counts), bool)
        is_short[short] = True
        merged[starts[short]] = short_hashes
        long_positions = np.repeat(starts, np.where(is_short, 0, counts)) + _ranks(np.where(is_short, 0, counts))
        merged[long_positions] = shingles
        shingles, per_text = merged, counts
    shingle_offsets = np.concatenate([[0], np.cumsum(per_text)]).astype(np.int64)
    return shingles, shingle_offsets  # unmixed: `signatures` mixes them with its seed


def _ranks(counts: np.ndarray) -> np.ndarray:
    """0, 1, ..., c-1 for each count c, concatenated."""
    total = int(counts.sum())
    if total == 0:
        return np.zeros(0, np.int64)
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    return np.arange(total, dtype=np.int64) - np.repeat(starts, counts)


def signatures(shingles: np.ndarray, offsets: np.ndarray, num_perm: int, seed: int) -> np.ndarray:
    """(texts, num_perm) one-permutation MinHash signatures; rows of texts without shingles stay EMPTY."""
    count = len(offsets) - 1
    hashed = mix64(shingles ^ np.uint64(seed * 0x9E3779B97F4A7C15 % (1 << 64)))
    bins = ((hashed >> np.uint64(32)) * np.uint64(num_perm)) >> np.uint64(32)
    rows = np.repeat(np.arange(count, dtype=np.int64), np.diff(offsets))
    flat = np.full(count * num_perm, EMPTY, dtype=np.uint64)
    np.minimum.at(flat, rows * num_perm + bins.astype(np.int64), hashed & MASK32)
    return densify(flat.reshape(count, num_perm))


def densify(sig: np.ndarray) -> np.ndarray:
    """Fill each empty bin from the next filled bin to its right (circularly), offset by the distance.

    Two right-to-left sweeps over the columns: the first finds, for the last column, the value that wraps
    around; the second fills. Rows with no filled bin at all stay EMPTY.
    """
    count, bins = sig.shape
    filled = sig != EMPTY
    out = sig.copy()
    nearest = np.full(count, EMPTY, np.uint64)
    distance = np.zeros(count, np.uint64)
    for sweep in range(2):
        for column in range(bins - 1, -1, -1):
            here = filled[:, column]
            distance += np.uint64(1)
            nearest = np.where(here, sig[:, column], nearest)
            distance[here] = 0
            if sweep == 1:
                fill = ~here & (nearest != EMPTY)
                out[fill, column] = nearest[fill] + distance[fill] * DENSIFY_STEP
    return out


@dataclass(frozen=True)
class LshBands:
    """`bands` x `rows` = how the signature is cut into buckets."""

    bands: int
    rows: int

    @classmethod
    def for_threshold(cls, threshold: float, num_perm: int, min_recall: float = 0.995) -> LshBands:
        """The most selective banding that still makes a pair at the threshold a candidate with `min_recall`.

        Candidates are checked against their exact Jaccard similarity afterwards, so extra candidates
        cost only time while missed ones are lost: bands are chosen for recall, not for a balanced S-curve
        (MinHashLSH's default banding for 0.8 misses about a quarter of the pairs at 0.8).
        """
        best = cls(num_perm, 1)
        for rows in range(1, num_perm + 1):
            bands = num_perm // rows
            if 1 - (1 - threshold**rows) ** bands >= min_recall:
                best = cls(bands, rows)
        return best

    def candidate_probability(self, similarity: float) -> float:
        return 1 - (1 - similarity**self.rows) ** self.bands


def band_keys(sig: np.ndarray, lsh: LshBands) -> np.ndarray:
    """(texts, bands) bucket keys; rows that were EMPTY (no shingles) get unique keys of their own."""
    blocks = sig[:, : lsh.bands * lsh.rows].reshape(sig.shape[0], lsh.bands, lsh.rows)
    combined = (blocks * MULTIPLIERS[: lsh.rows]).sum(axis=2, dtype=np.uint64)
    return mix64(combined + np.arange(lsh.bands, dtype=np.uint64))


def jaccard(first: frozenset, second: frozenset) -> float:
    """Exact Jaccard similarity of two sets of shingle hashes."""
    if not first and not second:
        return 1.0
    shared = len(first & second)
    return shared / (len(first) + len(second) - shared)
