"""Personal-data benchmark: the PII scanner against its earlier version on labelled technical and prose rows.

    python benchmarks/pii.py                       # 700 rows, seed 0
    python benchmarks/pii.py --rows 2000 --seed 1 --show-errors 10

Rows come from benchmarks/pii_data.py (seeded, offline): technical text without personal data (printed
arrays, slices, versions, dates, ids, order numbers, extension ranges, amounts, tables) and prose with
planted personal data of every type. Per type, at the row level: precision (rows where the type was found
that hold it) and recall (rows holding it where it was found); "whole" is the share of planted values
covered by one finding of their type from end to end (+1 415 555 0123 redacted as <PHONE>, not +1 <...>).
The baseline is adapterflow/data/pii.py as it was at --baseline-ref, loaded from git with its own default
min_score (0.4). Throughput: texts per second of `find` (best of 5) on these rows, on the demo's data and on
benchmarks/data_stage.py's documents (no candidates: what most rows of a data set cost).
"""

from __future__ import annotations

import os
import sys

# benchmarks/tokenize.py shadows the standard library's `tokenize` for anything that runs from this folder:
# keep the folder off the import path, the repository on it.
_HERE = os.path.dirname(os.path.abspath(__file__))
_ROOT = os.path.dirname(_HERE)
sys.path[:] = [p for p in sys.path if os.path.abspath(p or ".") != _HERE] + [_ROOT]

import argparse  # noqa: E402
import subprocess  # noqa: E402
import time  # noqa: E402
import types  # noqa: E402
from collections.abc import Callable  # noqa: E402
from typing import Any  # noqa: E402

from benchmarks.pii_data import Row, generate  # noqa: E402

BASELINE_REF = "434879a^"  # the scanner before context-aware scoring: recognizers called bare, min_score 0.4
TYPES = ("email", "phone", "credit_card", "iban", "ip_address", "national_id")


def baseline_module(ref: str) -> types.ModuleType:
    """adapterflow/data/pii.py as it was at `ref`, loaded as its own module."""
    source = subprocess.run(["git", "show", f"{ref}:adapterflow/data/pii.py"], cwd=_ROOT, check=True,
                            capture_output=True, text=True).stdout
    module = types.ModuleType("pii_baseline")
    sys.modules[module.__name__] = module  # dataclasses look their module up while the class is built
    exec(compile(source, f"{ref}:adapterflow/data/pii.py", "exec"), module.__dict__)  # noqa: S102 - our own file
    return module


def covers_whole(findings: list[Any], text: str, kind: str, value: str) -> bool:
    """Whether one finding of the type spans the planted value from end to end."""
    start = text.find(value)
    end = start + len(value)
    return any(f.entity == kind and f.start <= start and f.end >= end and not text[f.start : start].strip()
               and not text[end : f.end].strip() for f in findings)


def score(find: Callable[[str], list[Any]], rows: list[Row]) -> tuple[dict[str, dict[str, float]], list[tuple[str, Row, set[str]]]]:
    """Per type: precision, recall, rows, false-positive rows, whole share; and the rows it got wrong."""
    results = [find(row.text) for row in rows]
    table: dict[str, dict[str, float]] = {}
    errors = []
    for kind in TYPES:
        tp = fp = fn = whole = planted = 0
        for row, findings in zip(rows, results, strict=True):
            found = {f.entity for f in findings}
            has, got = kind in row.types, kind in found
            tp += has and got
            fp += got and not has
            fn += has and not got
            if (got and not has) or (has and not got):
                errors.append((kind, row, found))
            for value in row.planted.get(kind, []):
                planted += 1
                whole += covers_whole(findings, row.text, kind, value)
        table[kind] = {"precision": tp / max(tp + fp, 1), "recall": tp / max(tp + fn, 1), "rows": tp + fn,
                       "fp": fp, "whole": whole / max(planted, 1)}
    return table, errors


def demo_texts() -> list[str]:
    """The demo config's rows (configs/smollm2_lora_cpu.yaml: stdlib docs, 1200 pairs), instruction and answer."""
    from adapterflow.data.python_docs import build_python_docs

    rows = build_python_docs("stdlib", 1200, include_topics=True, seed=0)
    return [text for row in rows for text in (row["instruction"], row["output"])]


def data_stage_documents(seed: int, count: int = 10_000) -> list[str]:
    """benchmarks/data_stage.py's documents: 100 Zipf words like `w123` each, digits everywhere, no personal data."""
    from benchmarks.data_stage import generate as generate_documents

    return generate_documents(count, seed)[0]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=700)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--baseline-ref", default=BASELINE_REF)
    parser.add_argument("--show-errors", type=int, default=0, help="print this many misjudged rows of ours per type")
    args = parser.parse_args()

    from adapterflow.data.pii import PiiScanner
    from schemas.data import PiiConfig

    rows = generate(args.rows, args.seed)
    ours = PiiScanner(PiiConfig())
    before = baseline_module(args.baseline_ref).PiiScanner(PiiConfig(min_score=0.4))
    old, _ = score(before.find, rows)
    new, errors = score(ours.find, rows)
    demo = demo_texts()
    documents = data_stage_documents(args.seed)
    flagged = {label: sum(bool(scanner.find(text)) for text in demo) for label, scanner in (("before", before), ("after", ours))}
    rates = {"before": [0.0, 0.0, 0.0], "after": [0.0, 0.0, 0.0]}  # best of 5 rounds, alternating: the machine is shared
    for round_ in range(5):
        for label, scanner in (("before", before), ("after", ours))[:: 1 if round_ % 2 else -1]:
            for index, texts in enumerate(([row.text for row in rows], demo, documents)):
                started = time.perf_counter()
                for text in texts:
                    scanner.find(text)
                rates[label][index] = max(rates[label][index], len(texts) / (time.perf_counter() - started))

    clean = sum(not row.types for row in rows)
    print(f"{len(rows)} rows ({clean} without personal data), seed {args.seed}; "
          f"before = adapterflow/data/pii.py at {args.baseline_ref} (min_score 0.4), after = this tree\n")
    print(f"{'type':<12} {'rows':>5} | {'precision':^15} | {'recall':^15} | {'false pos. rows':^15} | {'redacted whole':^15}")
    print(f"{'':<12} {'':>5} | {'before':>7} {'after':>7} | {'before':>7} {'after':>7} | {'before':>7} {'after':>7} |"
          f" {'before':>7} {'after':>7}")
    for kind in TYPES:
        o, n = old[kind], new[kind]
        print(f"{kind:<12} {n['rows']:>5.0f} | {o['precision']:>7.3f} {n['precision']:>7.3f} | {o['recall']:>7.3f} "
              f"{n['recall']:>7.3f} | {o['fp']:>7.0f} {n['fp']:>7.0f} | {o['whole']:>7.3f} {n['whole']:>7.3f}")
    print("\ntexts/s of find (best of 5)      before     after")
    for index, label in enumerate(("these rows", f"demo data ({len(demo):,} texts)", f"data_stage documents ({len(documents):,})")):
        print(f"{label:<30} {rates['before'][index]:>8,.0f} {rates['after'][index]:>9,.0f}")
    print(f"demo data ({len(demo):,} texts of configs/smollm2_lora_cpu.yaml) flagged: before {flagged['before']}, "
          f"after {flagged['after']}")
    for kind in TYPES if args.show_errors else ():
        shown = [(row, found) for k, row, found in errors if k == kind][: args.show_errors]
        for row, found in shown:
            print(f"\n[{kind}] planted {sorted(row.types)} found {sorted(found)}\n{row.text}")


if __name__ == "__main__":
    main()
