"""The drift report: how this run's training data differs from the current champion's, from their two profiles
(adapterflow/data/profile.py), with one score per feature for the promotion policy (registry.promotion.max_drift).

Scores, each 0 when nothing changed: `rows_added` (share of this run's rows), `rows_removed` and `rows_changed`
(shares of the champion's rows), `sources` (total variation distance of the per-source shares), `quarantine_rate`
and `pii_rate` (absolute change of the share), `prompt_length` and `answer_length` (the two-sample
Kolmogorov-Smirnov statistic of word lengths), `vocabulary` (Jensen-Shannon divergence, base 2, of the word
frequencies over both runs' most frequent words plus one bucket for all others) and `eval_set` (1 when the eval
set differs).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from typing import Any, get_args

import numpy as np

from schemas.registry import DriftFeature

NO_CHAMPION_PROFILE = "no champion profile to compare with"
EXAMPLES_PER_KIND = 3
DRIFT_METRIC_PREFIX = "drift/"  # MLflow metric keys: drift/<feature>
FEATURES: tuple[str, ...] = get_args(DriftFeature)
OTHER_WORDS = "\0other"  # the vocabulary bucket of every word outside both top lists


def drift_metric(feature: str) -> str:
    return f"{DRIFT_METRIC_PREFIX}{feature}"


def row_changes(old: Mapping[str, list[str]], new: Mapping[str, list[str]]) -> dict[str, list[str]]:
    """Prompt hashes of rows added, removed and changed (the same prompt, other content). A prompt with several
    rows counts each row: rows found on both sides are unchanged, the rest pair up as changed, any left over were
    added or removed. A key appears once per row it stands for."""
    added, removed, changed = [], [], []
    for key in sorted(old.keys() | new.keys()):
        before, after = Counter(old.get(key, ())), Counter(new.get(key, ()))
        common = before & after
        gone, came = sum((before - common).values()), sum((after - common).values())
        paired = min(gone, came)
        changed += [key] * paired
        removed += [key] * (gone - paired)
        added += [key] * (came - paired)
    return {"added": added, "removed": removed, "changed": changed}


def example_keys(changes: Mapping[str, list[str]]) -> dict[str, list[str]]:
    """The first EXAMPLES_PER_KIND distinct prompt hashes of each kind of change (hash order: a fair sample)."""
    return {kind: list(dict.fromkeys(keys))[:EXAMPLES_PER_KIND] for kind, keys in changes.items()}


def length_shift(old: Mapping[str, Any], new: Mapping[str, Any]) -> dict[str, float]:
    """Kolmogorov-Smirnov two-sample test of the length samples, and how p50 and p95 moved."""
    from scipy.stats import ks_2samp

    if old["sample"] and new["sample"]:
        test = ks_2samp(old["sample"], new["sample"])
        statistic, pvalue = float(test.statistic), float(test.pvalue)
    else:
        statistic, pvalue = 0.0, 1.0
    return {"ks_statistic": statistic, "ks_pvalue": pvalue, "p50_before": old["p50"], "p50_after": new["p50"],
            "p50_shift": new["p50"] - old["p50"], "p95_before": old["p95"], "p95_after": new["p95"],
            "p95_shift": new["p95"] - old["p95"]}


def word_distribution(vocabulary: Mapping[str, Any], words: list[str]) -> np.ndarray:
    """Shares of `words` among all words counted, and the rest in the last bucket."""
    total = vocabulary["words"]
    shares = np.array([vocabulary["top"].get(word, 0) for word in words], dtype=float)
    if not total:
        return np.zeros(len(words) + 1)
    return np.append(shares, max(total - shares.sum(), 0.0)) / total


def vocabulary_shift(old: Mapping[str, Any], new: Mapping[str, Any]) -> float:
    """Jensen-Shannon divergence (base 2: 0 the same, 1 disjoint) of the two word-frequency distributions over the
    union of both top lists; words outside both lists share one bucket, so this measures a shift of the common
    words, not of rare ones."""
    from scipy.spatial.distance import jensenshannon

    words = sorted(old["top"].keys() | new["top"].keys())
    before, after = word_distribution(old, words), word_distribution(new, words)
    if not before.any() or not after.any():
        return float(before.any() != after.any())
    return float(jensenshannon(before, after, base=2) ** 2)


def source_changes(old: Mapping[str, int], new: Mapping[str, int]) -> tuple[dict[str, dict[str, int]], float]:
    """Rows per source before and after, and the total variation distance of the per-source shares."""
    names = sorted(old.keys() | new.keys())
    changes = {name: {"before": old.get(name, 0), "after": new.get(name, 0),
                      "change": new.get(name, 0) - old.get(name, 0)} for name in names}
    old_total, new_total = sum(old.values()) or 1, sum(new.values()) or 1
    distance = 0.5 * sum(abs(new.get(name, 0) / new_total - old.get(name, 0) / old_total) for name in names)
    return changes, float(distance)


def drift_report(
    old: Mapping[str, Any] | None, new: Mapping[str, Any], examples: Mapping[str, list[dict]] | None = None,
    compared_with: str | None = None,
) -> dict[str, Any]:
    """What changed from the `old` profile (the champion's) to `new` (this run's), with one score per feature.
    `examples`: quoted rows by kind (added, removed, changed), found by the caller for example_keys(...)."""
    if old is None:
        return {"compared_with": None, "note": NO_CHAMPION_PROFILE, "scores": {}}
    changes = row_changes(old["rows"], new["rows"])
    counts = {kind: len(keys) for kind, keys in changes.items()}
    sources, source_distance = source_changes(old["sources"], new["sources"])
    lengths = {side: length_shift(old["lengths"][side], new["lengths"][side]) for side in ("prompt", "answer")}
    vocabulary = vocabulary_shift(old["vocabulary"], new["vocabulary"])
    rates = {name: {"before": old[name], "after": new[name], "change": new[name] - old[name]}
             for name in ("quarantine_rate", "pii_rate")}
    same_eval_set = old["eval_set"] == new["eval_set"]
    scores = {
        "rows_added": counts["added"] / new["train_rows"] if new["train_rows"] else 0.0,
        "rows_removed": counts["removed"] / old["train_rows"] if old["train_rows"] else 0.0,
        "rows_changed": counts["changed"] / old["train_rows"] if old["train_rows"] else 0.0,
        "sources": source_distance,
        "quarantine_rate": abs(rates["quarantine_rate"]["change"]),
        "pii_rate": abs(rates["pii_rate"]["change"]),
        "prompt_length": lengths["prompt"]["ks_statistic"],
        "answer_length": lengths["answer"]["ks_statistic"],
        "vocabulary": vocabulary,
        "eval_set": 0.0 if same_eval_set else 1.0,
    }
    return {
        "compared_with": compared_with or "the champion",
        "note": None,
        "rows": {"before": old["train_rows"], "after": new["train_rows"], **counts},
        "examples": {kind: list((examples or {}).get(kind, []))[:EXAMPLES_PER_KIND] for kind in changes},
        "sources": sources,
        "rates": rates,
        "lengths": {"unit": new["lengths"]["unit"], **lengths},
        "vocabulary": {"js_divergence": vocabulary, "top_words": len(new["vocabulary"]["top"])},
        "eval_set": {"before": old["eval_set"], "after": new["eval_set"], "same": same_eval_set},
        "scores": {feature: scores[feature] for feature in FEATURES},
    }
