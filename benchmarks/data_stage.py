"""Data stage benchmark: adapterflow's clean + exact + near-dedup against datasketch's MinHashLSH, in one run.

    python benchmarks/data_stage.py                      # 100k documents, both methods
    python benchmarks/data_stage.py --docs 1000000 --skip-baseline   # memory at 1M documents

Documents of about 100 words are drawn from a Zipf vocabulary; a share of them are copies of an earlier
document with 1-5 word edits (true Jaccard of word 5-grams from about 0.5 to 0.95) or exact copies.
Recall: of the pairs whose true Jaccard is >= 0.8, the share that do not both survive deduplication.
Precision: of the documents removed as near duplicates, the share whose kept representative really has
Jaccard >= 0.8 with them (computed exactly from word 5-gram sets, not estimated).
"""

from __future__ import annotations

import os
import sys

# benchmarks/tokenize.py shadows the standard library's `tokenize` for anything that runs from this folder
# (spawned workers inherit the path too): keep the folder off the import path, the repository on it.
_HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:] = [p for p in sys.path if os.path.abspath(p or ".") != _HERE] + [os.path.dirname(_HERE)]

import argparse  # noqa: E402
import resource  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

from benchmarks.common import in_child  # noqa: E402

THRESHOLD = 0.8
SHINGLE = 5


def generate(count: int, seed: int, near_share: float = 0.12, exact_share: float = 0.02) -> tuple[list[str], list[int]]:
    """Documents and, for each, the index of the document it was derived from (itself for originals)."""
    import numpy as np

    rng = np.random.default_rng(seed)
    vocabulary = np.array([f"w{i}" for i in range(30_000)])
    ranks = np.arange(1, len(vocabulary) + 1)
    weights = 1.0 / ranks**1.05
    weights /= weights.sum()
    docs: list[str] = []
    origin: list[int] = []
    kinds = rng.random(count)
    for index in range(count):
        if index > 100 and kinds[index] < near_share + exact_share:
            source = int(rng.integers(0, index))
            source = origin[source]  # derive from an original, so families stay star-shaped
            words = docs[source].split()
            if kinds[index] >= exact_share:
                for _ in range(int(rng.integers(1, 6))):
                    position = int(rng.integers(0, len(words)))
                    words[position] = str(vocabulary[rng.choice(len(vocabulary), p=weights)])
            docs.append(" ".join(words))
            origin.append(source)
        else:
            length = int(rng.integers(90, 111))
            docs.append(" ".join(vocabulary[rng.choice(len(vocabulary), size=length, p=weights)]))
            origin.append(index)
    return docs, origin


def shingles(text: str) -> set[str]:
    """Word 5-grams of the case- and whitespace-folded text."""
    words = text.lower().split()
    if len(words) < SHINGLE:
        return {" ".join(words)}
    return {" ".join(words[i : i + SHINGLE]) for i in range(len(words) - SHINGLE + 1)}


def true_jaccard(a: str, b: str) -> float:
    sa, sb = shingles(a), shingles(b)
    return len(sa & sb) / len(sa | sb)


def positive_pairs(docs: list[str], origin: list[int]) -> list[tuple[int, int]]:
    """All pairs inside each family (an original and its copies) with true Jaccard >= THRESHOLD."""
    families: dict[int, list[int]] = {}
    for index, source in enumerate(origin):
        families.setdefault(source, []).append(index)
    pairs = []
    for members in families.values():
        for i, a in enumerate(members):
            for b in members[i + 1 :]:
                if true_jaccard(docs[a], docs[b]) >= THRESHOLD:
                    pairs.append((a, b))
    return pairs


def score(docs: list[str], positives: list[tuple[int, int]], kept: list[bool], near_of: dict[int, int]) -> tuple[float, float]:
    recall = sum(1 for a, b in positives if not (kept[a] and kept[b])) / max(len(positives), 1)
    correct = sum(1 for removed, rep in near_of.items() if true_jaccard(docs[removed], docs[rep]) >= THRESHOLD)
    return recall, correct / max(len(near_of), 1)


def peak_mb() -> tuple[float, float]:
    """Peak resident memory of this process and of its largest finished child process, in MB."""
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    children = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    return own, children


def run_adapterflow(parquet: str, folder: str, workers: int, queue) -> None:
    """In a fresh process: the clean and dedup stages exactly as the pipeline runs them."""
    import pyarrow.parquet as pq

    from adapterflow.storage.records import DataTable, IngestResult
    from schemas.data import CleanConfig, DedupConfig
    from tasks.clean import clean_table
    from tasks.dedup import dedup_rows

    rows = pq.ParquetFile(parquet).metadata.num_rows
    table = DataTable(path=parquet, rows=rows, task="pretrain")
    ingested = IngestResult(table=table, input_rows=rows, quarantined=0, quarantine_reasons={}, quarantine_path="", formats={})
    started = time.perf_counter()
    cleaned = clean_table(ingested, CleanConfig(max_response_chars=1_000_000), Path(folder) / "clean.parquet")
    result = dedup_rows(cleaned, DedupConfig(), Path(folder) / "dedup.parquet", workers)
    seconds = time.perf_counter() - started
    kept_lines = set(pq.read_table(result.table.path, columns=["line"]).column("line").to_pylist())
    removed = pq.read_table(result.removed_path).to_pylist()
    near_of = {row["line"] - 1: row["kept_line"] - 1 for row in removed if row["reason"] == "near"}
    queue.put((seconds, kept_lines, near_of, result.dropped, peak_mb()))


def run_datasketch(docs: list[str], threshold: float, queue) -> None:
    """In a fresh process: normalise, exact-dedup with a set, then datasketch MinHash + MinHashLSH (query, insert)."""
    from datasketch import MinHash, MinHashLSH

    started = time.perf_counter()
    lsh = MinHashLSH(threshold=threshold, num_perm=128)
    seen: set[str] = set()
    kept = [True] * len(docs)
    near_of: dict[int, int] = {}
    for index, text in enumerate(docs):
        folded = " ".join(text.lower().split())
        if folded in seen:
            kept[index] = False
            continue
        seen.add(folded)
        minhash = MinHash(num_perm=128)
        minhash.update_batch([shingle.encode() for shingle in shingles(folded)])
        found = lsh.query(minhash)
        if found:
            kept[index] = False
            near_of[index] = min(found)
        else:
            lsh.insert(index, minhash)
    seconds = time.perf_counter() - started
    queue.put((seconds, kept, near_of, peak_mb()))



def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--docs", type=int, default=100_000)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--skip-baseline", action="store_true", help="only adapterflow (e.g. for the 1M memory run)")
    args = parser.parse_args()

    import pyarrow as pa
    import pyarrow.parquet as pq

    print(f"generating {args.docs:,} documents ...", flush=True)
    docs, origin = generate(args.docs, args.seed)
    with tempfile.TemporaryDirectory(prefix="bench-data-") as folder:
        parquet = str(Path(folder) / "input.parquet")
        table = pa.table({"text": docs, "source": ["synthetic"] * len(docs), "line": list(range(1, len(docs) + 1))})
        pq.write_table(table, parquet, row_group_size=8192, compression="none")
        del table
        seconds, kept_lines, near_of, dropped, (own_mb, workers_mb) = in_child(run_adapterflow, parquet, folder, args.workers)
    kept = [index + 1 in kept_lines for index in range(len(docs))]
    print(f"adapterflow: {seconds:.2f}s, {args.docs / seconds:,.0f} docs/s, peak RSS {own_mb:,.0f} MB "
          f"(+ largest worker {workers_mb:,.0f} MB), dropped {dropped}", flush=True)
    if args.skip_baseline:
        return
    print("scoring against exact Jaccard ...", flush=True)
    positives = positive_pairs(docs, origin)
    ours_recall, ours_precision = score(docs, positives, kept, near_of)
    results = [(f"adapterflow ({args.workers} threads, 64 perms, verified)", args.docs / seconds, ours_recall,
                ours_precision, own_mb)]
    for threshold, label in ((0.9, "datasketch MinHashLSH defaults (t=0.9, 128 perms)"),
                             (THRESHOLD, "datasketch MinHashLSH t=0.8 (128 perms)")):
        base_seconds, base_kept, near_of, (base_mb, _) = in_child(run_datasketch, docs, threshold)
        recall, precision = score(docs, positives, base_kept, near_of)
        results.append((label, args.docs / base_seconds, recall, precision, base_mb))
    print(f"\n{args.docs:,} documents, {len(positives):,} pairs with true Jaccard >= {THRESHOLD}\n")
    print(f"{'method':<52} {'docs/s':>9} {'recall':>8} {'precision':>10} {'peak MB':>8}")
    for label, rate, recall, precision, memory in results:
        print(f"{label:<52} {rate:>9,.0f} {recall:>8.4f} {precision:>10.4f} {memory:>8,.0f}")
    print(f"\nthroughput ratio adapterflow / datasketch defaults: {results[0][1] / results[1][1]:.1f}x")
    print(f"throughput ratio adapterflow / datasketch t=0.8:    {results[0][1] / results[2][1]:.1f}x")


if __name__ == "__main__":
    main()
