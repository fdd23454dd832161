"""The drift report as markdown: data/drift.md in the MLflow run and the drift section of the Prefect summary."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


def quoted(example: Mapping[str, Any]) -> str:
    """One quoted example row on a line: its prompt, and its answer (both answers for a changed row)."""
    def flat(text: str) -> str:
        return " ".join(str(text).split())

    if "answer_before" in example:
        return (f"`{flat(example['prompt'])}`: answer was `{flat(example['answer_before'])}`, "
                f"is `{flat(example['answer'])}`")
    return f"`{flat(example.get('prompt', ''))}` -> `{flat(example.get('answer', ''))}`"


def drift_markdown(report: Mapping[str, Any]) -> list[str]:
    """A section on what changed since the champion's training data: rows, sources, rates, lengths, vocabulary,
    the eval set and the score of each feature."""
    lines = ["", "## What changed since the champion", ""]
    if report.get("note"):
        return [*lines, f"- {report['note']}"]
    rows, lengths = report["rows"], report["lengths"]
    lines += [f"- compared with: {report['compared_with']}",
              f"- training rows: {rows['before']} -> {rows['after']} ({rows['added']} added, {rows['removed']} "
              f"removed, {rows['changed']} changed)"]
    for kind in ("added", "removed", "changed"):
        lines += [f"  - {kind}: {quoted(example)}" for example in report["examples"].get(kind, [])]
    moved = {name: change for name, change in report["sources"].items() if change["change"]}
    lines.append("- sources: " + (", ".join(f"{name} {c['before']} -> {c['after']}" for name, c in moved.items())
                                  or "same counts"))
    for name, rate in report["rates"].items():
        lines.append(f"- {name.replace('_', ' ')}: {rate['before']:.2%} -> {rate['after']:.2%}")
    for side in ("prompt", "answer"):
        shift = lengths[side]
        lines.append(f"- {side} length ({lengths['unit']}): p50 {shift['p50_before']:g} -> {shift['p50_after']:g}, "
                     f"p95 {shift['p95_before']:g} -> {shift['p95_after']:g}; KS statistic {shift['ks_statistic']:.3f} "
                     f"(p = {shift['ks_pvalue']:.3g})")
    lines.append(f"- vocabulary: Jensen-Shannon divergence {report['vocabulary']['js_divergence']:.4f} "
                 f"(over the {report['vocabulary']['top_words']} most frequent words)")
    eval_set = report["eval_set"]
    lines.append("- eval set: " + ("the same" if eval_set["same"] else f"{eval_set['before']} -> {eval_set['after']}"))
    lines += ["", "| feature | score |", "|---|---:|"]
    lines += [f"| {feature} | {score:.4g} |" for feature, score in report["scores"].items()]
    return lines
