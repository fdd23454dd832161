"""Dedup: exact duplicates (folded prompt and response), then near duplicates (MinHash LSH, exact Jaccard)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from adapterflow.core.logs import stage_logger
from adapterflow.data.near_dedup import NearDedupSettings, resolve_near_duplicates
from adapterflow.data.scan import TableScan, read_group, scan_table
from adapterflow.data.tables import TableWriter
from adapterflow.data.text import comparison_parts
from adapterflow.orchestration.stage import stage
from adapterflow.storage.records import DedupResult, FilterResult, RunContext
from adapterflow.tracking.run import RunTracker
from schemas.data import DedupConfig

PREVIEW_CHARS = 120


def first_occurrences(keys: np.ndarray) -> np.ndarray:
    """For each row, the first row with the same key (rows are (n, 2) uint64 keys)."""
    if len(keys) == 0:
        return np.zeros(0, np.int64)
    _, first, inverse = np.unique(keys, axis=0, return_index=True, return_inverse=True)
    return first[inverse.ravel()]


def write_removed(path: Path, table_path: str, reasons: np.ndarray, kept_for: np.ndarray, similarity: np.ndarray) -> None:
    """Every removed row with the row kept in its place: deduplication loses nothing a user can't trace."""
    provenance = pq.read_table(table_path, columns=["source", "line"])
    removed = np.flatnonzero(reasons != "")
    kept = kept_for[removed]
    pq.write_table(pa.table({
        "source": provenance.column("source").take(removed), "line": provenance.column("line").take(removed),
        "reason": pa.array(reasons[removed].tolist(), pa.string()),
        "kept_source": provenance.column("source").take(kept), "kept_line": provenance.column("line").take(kept),
        "jaccard": pa.array(similarity[removed], pa.float32()),
    }), path)


def near_settings(config: DedupConfig) -> NearDedupSettings | None:
    near = config.near
    return NearDedupSettings(near.threshold, near.shingle_size, near.num_perm) if near.enabled else None


def dedup_rows(cleaned: FilterResult, config: DedupConfig, out_path: Path, workers: int) -> DedupResult:
    """Keep the first of exact duplicates, then drop rows nearly identical to an earlier kept row."""
    out_path.parent.mkdir(parents=True, exist_ok=True)
    settings = near_settings(config)
    scan = scan_table(Path(cleaned.table.path), settings, out_path.parent, workers)
    rows = len(scan.exact_keys)
    kept_for = first_occurrences(scan.exact_keys) if config.exact else np.arange(rows)
    unique = kept_for == np.arange(rows)
    reasons = np.where(unique, "", "exact").astype(object)
    similarity = np.where(unique, 0.0, 1.0)
    near = None
    try:
        if settings is not None:
            near = resolve_near_duplicates(scan.band_keys, scan.has_shingles & unique, scan.shingles, settings.threshold)
            reasons[near.removed] = "near"
            kept_for = np.where(near.removed, near.representative, kept_for)
            for row, value in near.similarity.items():
                similarity[row] = value
    finally:
        scan.remove_spills()
    keep = reasons == ""
    removed_path = out_path.with_name("removed_duplicates.parquet")
    write_removed(removed_path, cleaned.table.path, reasons, kept_for, similarity)
    with TableWriter(out_path, cleaned.table.task) as writer:
        for group in range(len(scan.groups)):
            start, end = scan.row_starts[group], scan.row_starts[group + 1]
            writer.write_batch(read_group(cleaned.table.path, group).filter(pa.array(keep[start:end])))
        table = writer.close()
    dropped = {"dedup.exact": int((~unique).sum()), "dedup.near": near.count if near else 0}
    clusters = describe_clusters(near.clusters(config.sample_clusters), scan, cleaned.table.path) if near else []
    return DedupResult(
        table=table,
        dropped={reason: count for reason, count in dropped.items() if count},
        near_clusters=clusters,
        near_candidates=near.candidate_pairs if near else 0,
        near_verified=near.verified_pairs if near else 0,
        removed_path=str(removed_path),
    )


def describe_clusters(clusters: list[dict], scan: TableScan, path: str) -> list[dict]:
    """Clusters by source location, with the kept row's text cut short: enough to judge them by eye."""
    wanted = {row for cluster in clusters for row in [cluster["kept"], *cluster["removed"]]}
    found: dict[int, tuple[str, str]] = {}
    for group in sorted({int(np.searchsorted(scan.row_starts, row, side="right") - 1) for row in wanted}):
        batch = read_group(path, group)
        prompts, responses = comparison_parts(batch, "document")
        texts = pc.binary_join_element_wise(prompts, responses, "\n")
        for row in [r for r in wanted if scan.row_starts[group] <= r < scan.row_starts[group + 1]]:
            local = int(row - scan.row_starts[group])
            where = f"{batch.column('source')[local].as_py()}:{batch.column('line')[local].as_py()}"
            found[row] = (where, texts[local].as_py()[:PREVIEW_CHARS])
    return [
        {"kept": found[c["kept"]][0], "kept_text": found[c["kept"]][1],
         "removed": [found[row][0] for row in c["removed"]], "jaccard": c["jaccard"]}
        for c in clusters
    ]


@stage("dedup", retries=2)
def dedup(cleaned: FilterResult, config: DedupConfig, workers: int, run: RunContext) -> DedupResult:
    """Remove exact and near duplicates and log how many there were."""
    result = dedup_rows(cleaned, config, Path(run.run_dir) / "data" / "dedup.parquet", workers)
    tracker = RunTracker.for_run(run)  # the clusters quote rows: with data.pii.action report they hold personal data
    tracker.log_metrics({
        "data/duplicates_exact": result.dropped.get("dedup.exact", 0),
        "data/duplicates_near": result.dropped.get("dedup.near", 0),
        "data/dedup_rows": result.table.rows,
    })
    tracker.log_artifact(result.removed_path, "data")
    if result.near_clusters:
        tracker.log_dict(result.near_clusters, "data/near_duplicate_clusters.json")
    stage_logger().info(
        "dedup removed %d exact and %d near duplicates (%d candidate pairs checked), %d rows left",
        result.dropped.get("dedup.exact", 0), result.dropped.get("dedup.near", 0), result.near_verified, result.table.rows,
    )
    return result
