"""The data report: every count with its reason, duplicate clusters, leaks, PII by type, validation, lengths."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.compute as pc
import pyarrow.parquet as pq

from adapterflow.data.tables import iter_batches
from adapterflow.data.text import prompts_and_responses
from adapterflow.storage.records import (
    DedupResult,
    FilterResult,
    IngestResult,
    RedactResult,
    SplitResult,
    TokenizedData,
    ValidationResult,
)


def data_counts(
    ingested: IngestResult, cleaned: FilterResult, redacted: RedactResult, deduped: DedupResult,
    splits: SplitResult, tokenized: TokenizedData,
) -> dict[str, Any]:
    """Counts at every stage with each drop reason; `reconciled` checks that every input row is accounted for."""
    dropped = {**cleaned.dropped, **redacted.dropped, **deduped.dropped, **splits.dropped, **tokenized.dropped}
    accounted = (ingested.quarantined + sum(dropped.values()) + tokenized.train_rows + tokenized.eval_rows
                 + tokenized.validation_rows)
    accounted -= splits.eval_rows_not_in_data  # frozen eval rows the data no longer holds are no input rows
    return {
        "input_rows": ingested.input_rows,
        "quarantined": ingested.quarantined,
        "quarantine_reasons": ingested.quarantine_reasons,
        "quarantine_file": ingested.quarantine_path,
        "dropped": dropped,
        "duplicates": deduped.dropped.get("dedup.exact", 0) + deduped.dropped.get("dedup.near", 0),
        "near_duplicates": deduped.dropped.get("dedup.near", 0),
        "leaked_eval_rows": splits.dropped.get("split.leak_exact", 0) + splits.dropped.get("split.leak_near", 0),
        "eval_rows_after_leakage": splits.eval.rows,
        "eval_warning": splits.eval_warning,
        "validation_note": splits.validation_note,  # why there is no validation split
        "pii": {"action": redacted.action, "rows": redacted.rows_with_pii, "by_type": redacted.found},
        "stages": {
            "ingested": ingested.table.rows,
            "clean": cleaned.table.rows,
            "redact": redacted.table.rows,
            "dedup": deduped.table.rows,
            "split_train": splits.train.rows,
            "split_eval": splits.eval.rows,
            "split_validation": splits.validation.rows if splits.validation else 0,
        },
        "train_rows": tokenized.train_rows,
        "eval_rows": tokenized.eval_rows,
        "validation_rows": tokenized.validation_rows,
        "reconciled": accounted == ingested.input_rows,
    }


def length_summary(splits: SplitResult, tokenized_dir: Path) -> dict[str, dict[str, float]]:
    """Percentiles of prompt and response characters and of tokens per example (before any cut), over train
    and eval."""
    prompts, responses = [], []
    for table in (splits.train, splits.eval):
        for batch in iter_batches(table):
            prompt, response = prompts_and_responses(batch)
            prompts.append(pc.utf8_length(prompt).to_numpy(zero_copy_only=False))
            responses.append(pc.utf8_length(response).to_numpy(zero_copy_only=False))
    tokens = np.concatenate([
        pq.read_table(tokenized_dir / f"{name}_examples.parquet", columns=["length"]).column("length").to_numpy()
        for name in ("train", "eval")
    ])
    series = {"prompt_chars": np.concatenate(prompts), "response_chars": np.concatenate(responses), "tokens": tokens}
    return {
        name: {f"p{q}": float(np.percentile(values, q)) for q in (5, 50, 95)} | {"max": float(values.max())}
        for name, values in series.items() if len(values)
    }, series


def plot_lengths(series: dict[str, np.ndarray], max_length: int, path: Path) -> None:
    """Histograms of prompt and response characters and tokens per example (the token limit marked)."""
    import matplotlib

    matplotlib.use("Agg")  # no display on servers and CI
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(1, len(series), figsize=(5 * len(series), 3.5))
    for axis, (name, values) in zip(np.atleast_1d(axes), series.items(), strict=True):
        axis.hist(values, bins=50, color="#4c72b0")
        axis.set_title(name.replace("_", " "))
        axis.set_ylabel("examples")
        if name == "tokens":
            axis.axvline(max_length, color="#c44e52", linestyle="--", label=f"max_length {max_length}")
            axis.legend()
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)


def build_report(
    ingested: IngestResult, cleaned: FilterResult, redacted: RedactResult, deduped: DedupResult,
    validated: ValidationResult, splits: SplitResult, tokenized: TokenizedData, tokenized_dir: Path,
    token_checks: ValidationResult, out_dir: Path,
) -> tuple[dict[str, Any], Path]:
    """The report dict and the histogram PNG written next to it."""
    lengths, series = length_summary(splits, tokenized_dir)
    plot = out_dir / "lengths.png"
    out_dir.mkdir(parents=True, exist_ok=True)
    plot_lengths(series, tokenized.max_length, plot)
    report = {
        "counts": data_counts(ingested, cleaned, redacted, deduped, splits, tokenized),
        "formats": ingested.formats,
        "near_duplicate_clusters": deduped.near_clusters,
        "near_duplicate_pairs_checked": deduped.near_verified,
        "removed_duplicates_file": deduped.removed_path,
        "leak_examples": splits.leak_examples,
        "validation": {"passed": validated.success, "expectations": validated.evaluated, "report": validated.report_path},
        "token_checks": {"passed": token_checks.success, "expectations": token_checks.evaluated,
                         "max_length": tokenized.max_length, "max_length_rule": tokenized.max_length_rule,
                         **{name: value for name, value in tokenized.stats.items()}},
        "lengths": lengths,
        "dataset_fingerprint": splits.fingerprint,
    }
    return report, plot
