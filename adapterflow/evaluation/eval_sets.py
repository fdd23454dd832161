"""Frozen eval sets: each registered model is evaluated on one stored set of eval rows until a refresh.

A ranked split moves rows between train and eval when the data grows, so a retrain could train on rows the
champion was evaluated on. The first run of a registered model therefore stores its eval rows by content in
the run's store (`eval-sets/<id>/`, the id a hash of the rows) and points at them twice: a small JSON pointer
in the store (found before the model is registered) and the registered model's `adapterflow.eval_set` tag.
Both name the set by id, never by a machine's path, so another machine sharing MLflow and the store finds it.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Literal

from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from adapterflow.core.errors import DataError
from adapterflow.core.hashing import sha256_json
from adapterflow.storage.records import DataTable
from adapterflow.storage.store import Storage

TAG_EVAL_SET = "adapterflow.eval_set"  # on runs, versions and registered models: the eval set's id
TAG_EVAL_SET_URI = "adapterflow.eval_set_uri"  # on registered models: where the store keeps it
TAG_EVAL_SET_CHANGED = "adapterflow.eval_set_changed"  # on runs: "<champion's id> -> <this run's id>"
KIND = "eval-sets"
MARKER = "eval_set.json"  # written last: its presence marks a complete frozen set
TABLE = "eval.parquet"
EvalSetAction = Literal["reuse", "freeze", "resplit"]


@dataclass(frozen=True)
class EvalSetRef:
    """A frozen eval set by id, with the store URI it was published at (for people; lookups go by id)."""

    id: str
    uri: str


def eval_set_action(mode: str, found: EvalSetRef | None) -> EvalSetAction:
    """What the split does with the model's eval set: `frozen` reuses the stored one or freezes the first,
    `refresh` always freezes a new one from the current data, `resplit` never stores or reads one."""
    if mode == "resplit":
        return "resplit"
    if mode == "refresh" or found is None:
        return "freeze"
    return "reuse"


def pointer_name(model_name: str) -> str:
    """The store's pointer for a registered model (the name hashed: any model name makes a safe key)."""
    return f"{KIND}/models/{sha256_json(model_name)[:24]}.json"


def find_eval_set(client: MlflowClient, storage: Storage, model_name: str) -> EvalSetRef | None:
    """The model's frozen eval set: its registered model's tag, else the store's pointer, else None."""
    try:
        tags = client.get_registered_model(model_name).tags
    except MlflowException:  # not registered yet
        tags = {}
    if tags.get(TAG_EVAL_SET):
        return EvalSetRef(tags[TAG_EVAL_SET], tags.get(TAG_EVAL_SET_URI, storage.uri(KIND, tags[TAG_EVAL_SET])))
    try:
        pointer = storage.get_json(pointer_name(model_name))
    except FileNotFoundError:
        return None
    except Exception as exc:  # an S3 store answers a missing key with a ClientError; others (auth) propagate
        if getattr(exc, "response", {}).get("Error", {}).get("Code") in ("NoSuchKey", "404", "NotFound"):
            return None
        raise
    return EvalSetRef(pointer["id"], pointer["uri"])


def load_eval_set(storage: Storage, ref: EvalSetRef, model_name: str) -> DataTable:
    """This machine's copy of a frozen eval set (fetched from the store when only the store has it)."""
    folder = storage.lookup(KIND, ref.id, MARKER)
    if folder is None:
        raise DataError(
            f"the frozen eval set {ref.id} of registered model {model_name!r} (published at {ref.uri}) is not in "
            f"this run's store {storage.root}",
            hint="set execution.storage to the store that holds it, or freeze a new eval set from the current "
                 "data with `adapterflow eval-set refresh CONFIG` (data.split.eval_set)")
    meta = json.loads((folder / MARKER).read_text())
    return DataTable(path=str(folder / TABLE), rows=meta["rows"], task=meta["task"])


def freeze_eval_set(storage: Storage, table: DataTable, eval_set_id: str) -> EvalSetRef:
    """Publish an eval table as the frozen set `eval-sets/<id>` (a no-op when the store has it already)."""
    if storage.lookup(KIND, eval_set_id, MARKER) is None:
        staging = storage.staging_dir("eval-set")
        shutil.copyfile(table.path, staging / TABLE)
        (staging / MARKER).write_text(json.dumps({"id": eval_set_id, "rows": table.rows, "task": table.task}))
        storage.publish(staging, KIND, eval_set_id, MARKER)
    return EvalSetRef(eval_set_id, storage.uri(KIND, eval_set_id))


def record_eval_set(client: MlflowClient, storage: Storage, model_name: str, ref: EvalSetRef) -> None:
    """Point the model at `ref`: the store's pointer always, the registered model's tags once it exists."""
    storage.put_json(pointer_name(model_name), {
        "id": ref.id, "uri": ref.uri, "registered_model": model_name, "frozen_at": datetime.now(UTC).isoformat()})
    tag_registered_model(client, model_name, ref)


def tag_registered_model(client: MlflowClient, model_name: str, ref: EvalSetRef) -> bool:
    """Tag the registered model with its eval set; False when the model is not registered yet."""
    try:
        client.set_registered_model_tag(model_name, TAG_EVAL_SET, ref.id)
        client.set_registered_model_tag(model_name, TAG_EVAL_SET_URI, ref.uri)
    except MlflowException:
        return False
    return True


def champion_eval_set(client: MlflowClient, model_name: str) -> str | None:
    """The eval set id the current champion was evaluated on ("" for a champion from before frozen sets), or
    None when the model has no champion."""
    try:
        version = client.get_model_version_by_alias(model_name, "champion")
    except MlflowException:
        return None
    return version.tags.get(TAG_EVAL_SET, "")
