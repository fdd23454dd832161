"""A run's data profile: what the rows that reach training look like, kept so a later run can say what changed.

Rows are identified by their prompt's hash and compared by their content's hash (adapterflow/core/hashing.py):
an edited answer is the same row changed, an edited prompt is one row removed and one added. Lengths are counted
in words, not tokens: words don't depend on the tokenizer, so a new base model is no data drift.
"""

from __future__ import annotations

import re
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping
from pathlib import PurePath
from typing import Any

import numpy as np

from adapterflow.core.hashing import cache_key
from adapterflow.data.splitting import content
from adapterflow.data.tables import prompt_and_response

PROFILE_VERSION = 1
LENGTH_SAMPLE = 2000  # lengths kept per side for the two-sample test: the rows with the lowest content hashes
TOP_WORDS = 500  # the vocabulary kept: the most frequent words with their counts
EXAMPLES_PER_SOURCE = 3
PREVIEW_CHARS = 200
WORD = re.compile(r"\w+")
UNKNOWN_SOURCE = "unknown"


def words(text: str) -> list[str]:
    """Lower-cased word characters runs: what lengths and the vocabulary count."""
    return WORD.findall(text.lower())


def row_identity(row: Mapping[str, Any]) -> tuple[str, str]:
    """(the prompt's hash, the content's hash without provenance) of one canonical row."""
    prompt, _ = prompt_and_response(row)
    return cache_key("prompt", prompt), cache_key("row", content(row))


def row_preview(row: Mapping[str, Any]) -> dict[str, str]:
    """A row's prompt and answer, cut to PREVIEW_CHARS each: what examples quote."""
    prompt, answer = prompt_and_response(row)
    return {"prompt": prompt[:PREVIEW_CHARS], "answer": answer[:PREVIEW_CHARS]}


def source_name(row: Mapping[str, Any]) -> str:
    """The file a row came from, by name: the folders differ between machines."""
    source = row.get("source")
    return PurePath(source).name if source else UNKNOWN_SOURCE


def data_rates(counts: Mapping[str, Any]) -> dict[str, float]:
    """Quarantine and PII shares from the data report's counts (adapterflow/data/report.py)."""
    inputs, cleaned = counts.get("input_rows", 0), counts.get("stages", {}).get("clean", 0)
    return {"quarantine_rate": counts.get("quarantined", 0) / inputs if inputs else 0.0,
            "pii_rate": counts.get("pii", {}).get("rows", 0) / cleaned if cleaned else 0.0}


def length_summary(lengths: list[tuple[str, int]]) -> dict[str, Any]:
    """p50, p95 and mean over every row, and the sample of the rows with the lowest content hashes: the same
    rows keep the same sample from run to run."""
    values = np.array([length for _, length in lengths], dtype=float)
    sample = [length for _, length in sorted(lengths)[:LENGTH_SAMPLE]]
    if not len(values):
        return {"p50": 0.0, "p95": 0.0, "mean": 0.0, "sample": []}
    return {"p50": float(np.percentile(values, 50)), "p95": float(np.percentile(values, 95)),
            "mean": float(values.mean()), "sample": sample}


def lowest_hashes(rows: list[tuple[str, Mapping[str, Any]]]) -> list[tuple[str, Mapping[str, Any]]]:
    """The EXAMPLES_PER_SOURCE rows with the lowest content hashes: the same rows from run to run."""
    return sorted(rows, key=lambda item: item[0])[:EXAMPLES_PER_SOURCE]


def data_profile(rows: Iterable[Mapping[str, Any]], counts: Mapping[str, Any], eval_set: str,
                 dataset_uri: str | None = None) -> dict[str, Any]:
    """The profile of the training rows: every row's hashes by identity, counts per source, the data report's
    quarantine and PII rates, word lengths of prompts and answers, the vocabulary, a few (already redacted)
    rows per source, the eval set's id and where the rows are stored (for quoting removed rows later)."""
    by_prompt: dict[str, list[str]] = defaultdict(list)
    sources: Counter[str] = Counter()
    vocabulary: Counter[str] = Counter()
    prompt_lengths, answer_lengths = [], []
    candidates: dict[str, list[tuple[str, Mapping[str, Any]]]] = defaultdict(list)
    for row in rows:
        key, digest = row_identity(row)
        by_prompt[key].append(digest)
        source = source_name(row)
        sources[source] += 1
        prompt, answer = prompt_and_response(row)
        prompt_words, answer_words = words(prompt), words(answer)
        vocabulary.update(prompt_words)
        vocabulary.update(answer_words)
        prompt_lengths.append((digest, len(prompt_words)))
        answer_lengths.append((digest, len(answer_words)))
        candidates[source].append((digest, row))
        if len(candidates[source]) > 4 * EXAMPLES_PER_SOURCE:  # memory stays flat: trim now and then
            candidates[source] = lowest_hashes(candidates[source])
    return {
        "version": PROFILE_VERSION,
        "train_rows": sum(sources.values()),
        "rows": {key: sorted(digests) for key, digests in sorted(by_prompt.items())},
        "sources": dict(sorted(sources.items())),
        **data_rates(counts),
        "lengths": {"unit": "words", "prompt": length_summary(prompt_lengths),
                    "answer": length_summary(answer_lengths)},
        "vocabulary": {"words": sum(vocabulary.values()), "top": dict(vocabulary.most_common(TOP_WORDS))},
        "examples": {source: [row_preview(row) for _, row in lowest_hashes(kept)]
                     for source, kept in sorted(candidates.items())},
        "eval_set": eval_set,
        "dataset_uri": dataset_uri,
    }


def previews_by_prompt(rows: Iterable[Mapping[str, Any]], keys: set[str]) -> dict[str, dict[str, str]]:
    """The first row's preview for each prompt hash in `keys` (one pass over the rows)."""
    found: dict[str, dict[str, str]] = {}
    for row in rows:
        key, _ = row_identity(row)
        if key in keys and key not in found:
            found[key] = row_preview(row)
    return found
