"""Near-duplicate resolution: vectorised exact Jaccard, row-order representatives."""

from __future__ import annotations

import numpy as np

from adapterflow.data.minhash import jaccard
from adapterflow.data.near_dedup import candidate_pairs, pair_jaccard, resolve_near_duplicates


def test_pair_jaccard_matches_set_arithmetic() -> None:
    rng = np.random.default_rng(1)
    rows = [rng.integers(0, 2**63, size=int(rng.integers(0, 80)), dtype=np.uint64) for _ in range(60)]
    for i in range(1, 60, 2):  # overlapping rows, with repeated values inside a row
        rows[i] = np.concatenate([rows[i - 1][: len(rows[i - 1]) // 2], rows[i][:20], rows[i][:3]])
    pairs = np.array([(a, b) for a in range(0, 60, 3) for b in range(a, 60, 5)])
    expected = [jaccard(frozenset(rows[a].tolist()), frozenset(rows[b].tolist())) for a, b in pairs]
    assert np.allclose(pair_jaccard(pairs, lambda row: rows[row]), expected)


def test_candidates_pair_each_row_with_its_buckets_first_row() -> None:
    keys = np.array([[1, 9], [1, 8], [2, 8], [1, 7]], dtype=np.uint64)
    pairs = candidate_pairs(keys, np.ones(4, bool))
    assert pairs.tolist() == [[0, 1], [1, 2], [0, 3]]


def test_resolution_keeps_the_earliest_and_checks_against_kept_rows() -> None:
    a = np.arange(0, 100, dtype=np.uint64)
    b = np.arange(5, 105, dtype=np.uint64)  # J(a, b) ~ 0.90
    c = np.arange(25, 125, dtype=np.uint64)  # J(b, c) ~ 0.67, J(a, c) ~ 0.6
    rows = [a, b, c]
    keys = np.ones((3, 2), np.uint64)  # all in one bucket
    result = resolve_near_duplicates(keys, np.ones(3, bool), lambda row: rows[row], threshold=0.8)
    assert result.removed.tolist() == [False, True, False]
    assert result.representative[1] == 0
    assert result.clusters(5) == [{"kept": 0, "removed": [1], "jaccard": [round(95 / 105, 3)]}]
