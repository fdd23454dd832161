"""Small canonical tables for stage tests."""

from __future__ import annotations

from pathlib import Path

from adapterflow.data.tables import TableWriter
from adapterflow.storage.records import DataTable, FilterResult


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


def tokenized_questions(folder: Path, model_dir: Path, rows: int, eval_size: float,  # noqa: ANN201
                        validation_rows: int = 0):
    """(store, base model, tokenized data) of `rows` questions split (with `validation_rows` carved from train)
    and tokenized for the tiny model: what a training test trains on."""
    from adapterflow.core.home import Home
    from adapterflow.data.splitting import split_rows
    from adapterflow.storage.records import BaseModelRef
    from adapterflow.storage.store import Storage
    from schemas.data import LeakageConfig, SplitConfig
    from schemas.tokenize import TokenizeConfig
    from tasks.tokenize import tokenize_splits

    home = Home(folder / "home")
    home.cache.mkdir(parents=True)
    storage = Storage.local(home.cache)
    base = BaseModelRef(name="tiny", path=str(model_dir), sha256="x")
    config = SplitConfig(eval_size=eval_size, max_eval_rows=None, validation_size=validation_rows,
                         min_validation_rows=max(validation_rows, 1))
    split = split_rows(filtered(folder / "data", questions(rows)), config, LeakageConfig(enabled=False), storage, 1)
    return storage, base, tokenize_splits(split, base, TokenizeConfig(max_length=64), storage)
