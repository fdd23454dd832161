"""Frozen eval sets: a registered model's eval rows stay its eval rows when the data grows, copies of them
leave train, only a refresh makes a new set, and another machine sharing MLflow and the store finds it."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import ClassVar

import pytest
from mlflow.tracking import MlflowClient

import adapterflow.storage.store as storage_module
from adapterflow.core.errors import DataError
from adapterflow.data.tables import iter_rows
from adapterflow.evaluation.eval_sets import (
    TAG_EVAL_SET,
    TAG_EVAL_SET_CHANGED,
    EvalSetRef,
    eval_set_action,
    find_eval_set,
    pointer_name,
)
from adapterflow.storage.records import RunContext
from adapterflow.storage.store import Storage
from schemas.data import LeakageConfig, SplitConfig
from tasks.split import eval_set_change, split, split_with_eval_set
from tests.tasks.helpers import chat, filtered, questions

FROZEN = SplitConfig(eval_size=0.1, max_eval_rows=20, min_eval_rows=0, validation_size=0)  # eval side only here


def examples(table) -> set[tuple[str, str]]:
    return {(row["messages"][0]["content"], row["messages"][1]["content"]) for row in iter_rows(table)}


@pytest.fixture
def model(tmp_path: Path) -> str:
    """A registered model name of this test's own in the session's MLflow store (a fresh store costs seconds)."""
    return f"frozen-{tmp_path.name}"


def run_split(model: str, folder: Path, rows: list[dict], store: Storage, config: SplitConfig = FROZEN):
    return split_with_eval_set(filtered(folder, rows), config, LeakageConfig(), store, 1, model, MlflowClient())


def test_frozen_eval_rows_stay_in_eval_when_the_data_grows_and_new_rows_go_to_train(tmp_path: Path, model: str) -> None:
    store = Storage.local(tmp_path / "store")
    first = run_split(model, tmp_path / "a", questions(200), store)
    frozen = examples(first.eval)
    assert len(frozen) == 20 and first.eval_set

    grown_rows = questions(400)  # twice the data: a ranked split capped at 20 rows would pick other rows
    grown = run_split(model, tmp_path / "b", grown_rows, store)
    assert grown.eval_set == first.eval_set and examples(grown.eval) == frozen
    assert not frozen & examples(grown.train)
    new_rows = {(row["messages"][0]["content"], row["messages"][1]["content"]) for row in grown_rows[200:]}
    assert new_rows <= examples(grown.train) and grown.train.rows == 400 - 20
    assert grown.dropped == {} and grown.eval_rows_not_in_data == 0  # the frozen rows themselves are no copies

    removed = next(iter(frozen))  # a frozen row deleted from the data stays in eval, counted as not in the data
    shrunk = run_split(model, tmp_path / "d", [row for row in grown_rows if (row["messages"][0]["content"],
                                                row["messages"][1]["content"]) != removed], store)
    assert examples(shrunk.eval) == frozen and shrunk.eval_rows_not_in_data == 1

    resplit = run_split(model, tmp_path / "c", grown_rows, store, FROZEN.model_copy(update={"eval_set": "resplit"}))
    assert examples(resplit.eval) != frozen  # what the frozen set prevents: the ranked split moves rows


def test_copies_of_frozen_eval_rows_in_new_data_leave_train_and_are_counted(tmp_path: Path, model: str) -> None:
    store = Storage.local(tmp_path / "store")
    first = run_split(model, tmp_path / "a", questions(200), store)
    frozen_rows = list(iter_rows(first.eval))
    exact, near = frozen_rows[0], frozen_rows[1]
    copies = [
        chat(exact["messages"][0]["content"], exact["messages"][1]["content"], 9001, source="new.jsonl"),
        chat(near["messages"][0]["content"] + " please", near["messages"][1]["content"], 9002, source="new.jsonl"),
        # the same question with another answer is another example: it joins train
        chat(near["messages"][0]["content"], "a different answer about another function entirely", 9003, "new.jsonl"),
    ]
    grown = run_split(model, tmp_path / "b", questions(300) + copies, store)
    assert grown.dropped == {"split.frozen_leak_exact": 1, "split.frozen_leak_near": 1}
    frozen_lines = {row["line"] for row in frozen_rows}
    assert {row["line"] for row in iter_rows(grown.train)} == set(range(1, 301)) - frozen_lines | {9003}
    assert {(e["train"], e["kind"]) for e in grown.leak_examples} == {("new.jsonl:9001", "exact"),
                                                                       ("new.jsonl:9002", "near")}
    assert examples(grown.eval) == examples(first.eval)


def test_refresh_freezes_a_new_set_that_later_runs_use(tmp_path: Path, model: str) -> None:
    store = Storage.local(tmp_path / "store")
    first = run_split(model, tmp_path / "a", questions(200), store)
    refreshed = run_split(model, tmp_path / "b", questions(400), store, FROZEN.model_copy(update={"eval_set": "refresh"}))
    assert refreshed.eval_set != first.eval_set and refreshed.eval.rows == 20
    assert find_eval_set(MlflowClient(), store, model).id == refreshed.eval_set
    later = run_split(model, tmp_path / "c", questions(450), store)
    assert later.eval_set == refreshed.eval_set and examples(later.eval) == examples(refreshed.eval)


class MissingKey(Exception):
    response: ClassVar[dict] = {"Error": {"Code": "NoSuchKey"}}


@pytest.fixture
def bucket(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An S3 store faked by a folder: each machine keeps its own mirror and sees only what the bucket holds."""
    root = tmp_path / "bucket"

    def path(uri: str) -> Path:
        return root / uri.removeprefix("s3://")

    def get(uri: str) -> bytes:
        if not path(uri).is_file():
            raise MissingKey(uri)
        return path(uri).read_bytes()

    def put(uri: str, payload: bytes) -> None:
        path(uri).parent.mkdir(parents=True, exist_ok=True)
        path(uri).write_bytes(payload)

    monkeypatch.setattr(storage_module, "_s3_exists", lambda uri: path(uri).is_file())
    monkeypatch.setattr(storage_module, "_s3_get", get)
    monkeypatch.setattr(storage_module, "_s3_put", put)
    monkeypatch.setattr(storage_module, "_s3_upload_folder",
                        lambda folder, uri, marker: shutil.copytree(folder, path(uri), dirs_exist_ok=True))
    monkeypatch.setattr(storage_module, "_s3_download_folder",
                        lambda uri, target: shutil.copytree(path(uri), target, dirs_exist_ok=True))
    return root


def test_another_machine_sharing_mlflow_and_the_store_finds_the_frozen_set(
    tmp_path: Path, model: str, bucket: Path
) -> None:
    first_machine = Storage("s3://bucket/cache", tmp_path / "machine-a")
    first = run_split(model, tmp_path / "a", questions(200), first_machine)  # before the model is registered: the pointer
    client = MlflowClient()
    client.create_registered_model(model)

    second_machine = Storage("s3://bucket/cache", tmp_path / "machine-b")  # a fresh mirror: nothing local
    grown = run_split(model, tmp_path / "b", questions(300), second_machine)
    assert grown.eval_set == first.eval_set and examples(grown.eval) == examples(first.eval)
    assert Path(grown.eval.path).is_relative_to(tmp_path / "machine-b")
    assert client.get_registered_model(model).tags[TAG_EVAL_SET] == first.eval_set  # tagged once registered

    (bucket / "bucket" / "cache" / pointer_name(model)).unlink()  # the registered model's tag alone suffices
    third_machine = Storage("s3://bucket/cache", tmp_path / "machine-c")
    assert run_split(model, tmp_path / "c", questions(300), third_machine).eval_set == first.eval_set

    with pytest.raises(DataError, match="eval-set refresh"):  # a store without the set: said, not re-frozen
        run_split(model, tmp_path / "d", questions(300), Storage.local(tmp_path / "other-store"))


def test_the_run_and_a_champion_on_another_set_are_tagged(tmp_path: Path, model: str) -> None:
    client = MlflowClient()
    run = RunContext(run_name="r", run_dir=str(tmp_path), home=str(tmp_path),
                     mlflow_run_id=client.create_run(client.create_experiment(model)).info.run_id,
                     experiment=model, config_sha256="c", storage=str(tmp_path / "store"))
    client.create_registered_model(model)
    version = client.create_model_version(model, "file:///nowhere", run.mlflow_run_id, tags={TAG_EVAL_SET: "old-set"})
    client.set_registered_model_alias(model, "champion", version.version)
    result = split.fn(filtered(tmp_path / "a", questions(100)), FROZEN, LeakageConfig(), 1, run)
    tags = client.get_run(run.mlflow_run_id).data.tags
    assert tags[TAG_EVAL_SET] == result.eval_set
    assert tags[TAG_EVAL_SET_CHANGED] == f"old-set -> {result.eval_set}"


def test_eval_set_decisions() -> None:
    found = EvalSetRef("abc", "s3://b/eval-sets/abc")
    assert eval_set_action("frozen", found) == "reuse" and eval_set_action("frozen", None) == "freeze"
    assert eval_set_action("refresh", found) == "freeze" and eval_set_action("resplit", found) == "resplit"
    assert eval_set_change(None, "abc") is None and eval_set_change("abc", "abc") is None
    assert eval_set_change("", "abc") == "unknown -> abc"
