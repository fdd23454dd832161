"""Small canonical tables for stage tests."""

from __future__ import annotations

from pathlib import Path

from adapterflow.data.tables import TableWriter
from adapterflow.records import DataTable, FilterResult


def chat(prompt: str, answer: str, line: int, source: str = "s") -> dict:
    return {"messages": [{"role": "user", "content": prompt}, {"role": "assistant", "content": answer}],
            "source": source, "line": line}


def table_of(folder: Path, rows: list[dict], task: str = "sft", name: str = "in.parquet") -> DataTable:
    folder.mkdir(parents=True, exist_ok=True)
    with TableWriter(folder / name, task) as writer:
        for row in rows:
            writer.write(row)
        return writer.close()


def filtered(folder: Path, rows: list[dict], task: str = "sft") -> FilterResult:
    return FilterResult(table=table_of(folder, rows, task), dropped={})


def questions(count: int) -> list[dict]:
    """Distinct question/answer rows with enough words for shingles."""
    return [chat(f"question number {i} about the {i % 7} module and its {i % 11} functions",
                 f"answer {i}: call function_{i} with arguments {i * 3} and {i * 5} to get result {i * 7}", i + 1)
            for i in range(count)]
