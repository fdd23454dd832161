"""MinHash primitives: keys, shingles, signatures and banding behave as the theory says."""

from __future__ import annotations

import numpy as np
import pyarrow as pa

from adapterflow.data.minhash import (
    EMPTY, LshBands, band_keys, densify, jaccard, shingle_hashes, signatures, text_keys, word_hashes,
)


def words(texts: list[str]):
    return word_hashes(pa.array(texts))


def test_text_keys_ignore_spacing_but_not_word_order() -> None:
    keys = text_keys(*words(["a b  c", "a b c", "c b a", "", "a b c d"]))
    assert (keys[0] == keys[1]).all()
    assert not (keys[1] == keys[2]).all() and not (keys[1] == keys[4]).all()
    assert (keys[3] == 0).all()


def test_shingles_of_short_and_long_texts() -> None:
    shingles, offsets = shingle_hashes(words(["one two", "", "a b c d e f g"]), size=5)
    assert np.diff(offsets).tolist() == [1, 0, 3]
    again, _ = shingle_hashes(words(["x a b c d e f g"]), size=5)
    assert set(shingles[offsets[2] : offsets[3]].tolist()) < set(again.tolist())


def test_signature_agreement_tracks_jaccard() -> None:
    rng = np.random.default_rng(0)
    vocabulary = [f"w{i}" for i in range(5000)]
    base = list(rng.choice(vocabulary, 200))
    variants = []
    for edits in (0, 5, 20, 60):
        copy = list(base)
        for position in rng.choice(200, edits, replace=False):
            copy[position] = f"new{position}"
        variants.append(" ".join(copy))
    texts = [" ".join(base), *variants]
    text_words = words(texts)
    shingles, offsets = shingle_hashes(text_words, 5)
    sig = signatures(shingles, offsets, num_perm=256, seed=3)
    sets = [frozenset(shingles[offsets[i] : offsets[i + 1]].tolist()) for i in range(len(texts))]
    for i in range(1, len(texts)):
        estimate = float((sig[0] == sig[i]).mean())
        assert abs(estimate - jaccard(sets[0], sets[i])) < 0.1


def test_densify_fills_from_the_next_filled_bin() -> None:
    sig = np.array([[EMPTY, 7, EMPTY, 3], [EMPTY] * 4], dtype=np.uint64)
    out = densify(sig)
    step = np.uint64(0x9E3779B97F4A7C15)
    assert out[0].tolist() == [7 + int(step), 7, 3 + int(step), 3]
    assert (out[1] == EMPTY).all()


def test_bands_favour_recall_at_the_threshold() -> None:
    lsh = LshBands.for_threshold(0.8, 64)
    assert lsh.bands * lsh.rows <= 64
    assert lsh.candidate_probability(0.8) >= 0.995
    assert lsh.candidate_probability(0.2) < 0.05
    keys = band_keys(np.zeros((2, 64), np.uint64), lsh)
    assert keys.shape == (2, lsh.bands) and (keys[0] == keys[1]).all()
