"""Drift demo: the drift report of the demo data (configs/smollm2_lora_cpu.yaml's python_docs source) against
itself, an unchanged retrain, and against itself plus 200 rows from another domain (general English sentences
from the packaged forgetting text), computed with the profile and report functions directly on the rows.

    .venv/bin/python -m benchmarks.drift_demo

The rows are the source's question/answer pairs as canonical chat rows; the clean, PII, dedup and split stages
don't run here, so the counts are of all rows rather than of a run's train side, and the quarantine and PII
rates are 0 on both sides.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

from adapterflow.data.drift import drift_report, example_keys, row_changes
from adapterflow.data.formats import to_canonical
from adapterflow.data.profile import data_profile, previews_by_prompt
from adapterflow.data.python_docs import build_python_docs
from adapterflow.reporting.drift import drift_markdown
from schemas import load_config

ROOT = Path(__file__).resolve().parent.parent
DEMO = ROOT / "configs" / "smollm2_lora_cpu.yaml"
OTHER_DOMAIN = ROOT / "adapterflow" / "evaluation" / "eval_data" / "general_english.txt"
ADDED_ROWS = 200


def demo_rows() -> list[dict]:
    """The demo config's source rows as the ingest stage makes them (chat messages and provenance)."""
    source = load_config(DEMO).data.sources[0]
    pairs = build_python_docs(source.package, source.max_examples, source.include_topics, source.seed)
    return [{**to_canonical(pair, "alpaca"), "source": "python_docs-stdlib.jsonl", "line": number}
            for number, pair in enumerate(pairs, 1)]


def other_domain_rows(count: int) -> list[dict]:
    """`count` rows about everyday life: continue one sentence of the forgetting text with the next."""
    lines = [line for line in OTHER_DOMAIN.read_text().splitlines() if line.strip()]
    pairs = [{"instruction": f"Continue the story: {lines[index]}", "input": "", "output": lines[index + 1]}
             for index in range(count)]
    return [{**to_canonical(pair, "alpaca"), "source": "general_english.jsonl", "line": number}
            for number, pair in enumerate(pairs, 1)]


def report(old_rows: list[dict], new_rows: list[dict]) -> tuple[dict, float]:
    """The drift report of `new_rows` against `old_rows`, examples quoted, and the seconds it took."""
    started = time.perf_counter()
    old, new = data_profile(old_rows, {}, "demo-eval"), data_profile(new_rows, {}, "demo-eval")
    keys = example_keys(row_changes(old["rows"], new["rows"]))
    added = previews_by_prompt(new_rows, set(keys["added"]))
    examples = {"added": [added[key] for key in keys["added"]]}
    return drift_report(old, new, examples, compared_with="the demo data"), time.perf_counter() - started


def main() -> None:
    import scipy.spatial.distance
    import scipy.stats  # noqa: F401 - imported here so the timings below measure the work, not the import

    rows = demo_rows()
    for title, new_rows in (("unchanged retrain", rows),
                            (f"{ADDED_ROWS} rows added from another domain", [*rows, *other_domain_rows(ADDED_ROWS)])):
        found, seconds = report(rows, new_rows)
        print(f"# {title} ({len(rows)} -> {len(new_rows)} rows, profiles and report in {seconds:.2f} s)")
        print("\n".join(drift_markdown(found)).strip())
        print("scores:", json.dumps({feature: round(score, 4) for feature, score in found["scores"].items()}))
        print()


if __name__ == "__main__":
    main()
