"""The drift stage's quoting: added and changed rows from this run's train split, removed rows and old answers from
the champion's, found through the store while it holds them."""

from __future__ import annotations

from pathlib import Path

from adapterflow.data.drift import row_changes
from adapterflow.data.profile import data_profile
from adapterflow.data.tables import TableWriter, iter_rows
from adapterflow.storage.records import DataTable
from adapterflow.storage.store import Storage
from tasks.drift import NOT_STORED, quoted_examples, stored_train_rows


def table(path: Path, pairs: list[tuple[str, str]]) -> DataTable:
    with TableWriter(path, "sft") as writer:
        for number, (prompt, answer) in enumerate(pairs, 1):
            writer.write({"messages": [{"role": "user", "content": prompt}, {"role": "assistant", "content": answer}],
                          "source": "docs.jsonl", "line": number})
        return writer.close()


def test_removed_and_changed_rows_are_quoted_from_the_champions_stored_rows(tmp_path: Path) -> None:
    storage = Storage.local(tmp_path / "store")
    stored = storage.local_dir("datasets", "old")
    old_rows = table(stored / "train.parquet", [("kept?", "yes"), ("gone?", "was here"), ("edited?", "old answer")])
    new_rows = table(tmp_path / "new.parquet", [("kept?", "yes"), ("edited?", "new answer"), ("new?", "arrived")])
    old = data_profile(iter_rows(old_rows), {}, "e", storage.uri("datasets", "old"))
    new = data_profile(iter_rows(new_rows), {}, "e")

    champion_rows = stored_train_rows(storage, old, "sft")
    assert champion_rows is not None
    quoted = quoted_examples(row_changes(old["rows"], new["rows"]), champion_rows, new_rows)
    assert quoted == {"added": [{"prompt": "new?", "answer": "arrived"}],
                      "removed": [{"prompt": "gone?", "answer": "was here"}],
                      "changed": [{"prompt": "edited?", "answer": "new answer", "answer_before": "old answer"}]}

    gone = old | {"dataset_uri": storage.uri("datasets", "evicted")}  # the store no longer holds the champion's rows
    assert stored_train_rows(storage, gone, "sft") is None
    without = quoted_examples(row_changes(old["rows"], new["rows"]), None, new_rows)
    assert without["removed"] == [{"prompt": NOT_STORED, "answer": ""}]
    assert without["changed"][0]["answer_before"] == NOT_STORED

