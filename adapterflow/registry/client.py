"""Registry side effects: log the adapter as a pyfunc model, register it, read and move aliases."""

from __future__ import annotations

import getpass
import os
import tempfile
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import mlflow
from mlflow.exceptions import MlflowException
from mlflow.models import Model
from mlflow.pyfunc import MODEL_CONFIG
from mlflow.tracking import MlflowClient

from adapterflow.core.errors import AdapterflowError
from adapterflow.methods.artifacts import read_manifest
from adapterflow.models.base import base_model_provenance
from adapterflow.registry.history import TAG_CHAMPION_HISTORY, Rollback, dump_history, parse_history, with_champion
from adapterflow.registry.pyfunc import CLASSIFIER_SIGNATURE, SIGNATURE
from adapterflow.storage.records import BaseModelRef
from adapterflow.tracking.run import ALIAS_CHAMPION, ALIAS_PREVIOUS_CHAMPION, TAG_ADAPTER_SHA, download_artifacts

MODEL_ARTIFACT_PATH = "model"
MODEL_CODE = Path(__file__).with_name("model_code.py")
PIP_REQUIREMENTS = ["torch", "transformers==5.23.0", "peft==0.21.2", "accelerate==1.15.0", "bitsandbytes==0.50.2",
                    "safetensors", "pandas"]


@dataclass(frozen=True)
class ChampionRef:
    """The current champion version, downloaded: its adapter folder and the base it belongs to."""

    version: str
    adapter_dir: str
    base_path: str
    base_sha256: str


def alias_version(client: MlflowClient, name: str, alias: str) -> str | None:
    """The version an alias points at, or None when the model or the alias doesn't exist."""
    try:
        return str(client.get_model_version_by_alias(name, alias).version)
    except MlflowException as exc:
        if exc.error_code in ("RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE", "NOT_FOUND"):
            return None
        raise


def find_champion(name: str, client: MlflowClient | None = None) -> ChampionRef | None:
    """Download the champion's adapter, when there is a champion."""
    client = client or MlflowClient()
    version = alias_version(client, name, ALIAS_CHAMPION)
    if version is None:
        return None
    adapter_dir, base_path, base_sha256 = download_model(f"models:/{name}/{version}")
    return ChampionRef(version, adapter_dir, base_path, base_sha256)


def download_model(model_uri: str) -> tuple[str, str, str]:
    """A registered model's trained artifact folder, its base model's folder here, and the base weights' hash."""
    try:
        folder = download_artifacts(model_uri)
    except MlflowException as exc:
        raise AdapterflowError(f"can't find {model_uri}: {exc.message}",
                               hint="use models:/NAME/VERSION or models:/NAME@ALIAS (see adapterflow ui)") from None
    config = Model.load(str(folder / "MLmodel")).flavors["python_function"][MODEL_CONFIG]
    return str(folder / "artifacts" / "adapter"), _base_path(config), config["base_model_sha256"]


def _base_path(model_config: dict) -> str:
    from adapterflow.registry.pyfunc import base_model_folder

    return str(base_model_folder(model_config))


def register_adapter(
    client: MlflowClient, run_id: str, name: str, adapter_dir: str, base: BaseModelRef, tags: dict[str, str],
    description: str,
) -> tuple[str, str]:
    """Log the adapter as a pyfunc model in the run, register it, and return (version, model URI).

    Idempotent per run: a retried registration returns the version the run registered already.
    """
    for existing in client.search_model_versions(f"name='{name}' and run_id='{run_id}'"):
        return str(existing.version), f"models:/{name}/{existing.version}"
    model_config = {"base_model": base.name, "base_model_path": base.path, "base_model_sha256": base.sha256}
    classifier = read_manifest(adapter_dir)[1].task == "classification"
    with tempfile.TemporaryDirectory(prefix="adapterflow-model-") as staging:
        model_dir = Path(staging) / MODEL_ARTIFACT_PATH
        mlflow.pyfunc.save_model(
            path=str(model_dir),
            python_model=str(MODEL_CODE),
            artifacts={"adapter": adapter_dir},
            model_config=model_config,
            signature=CLASSIFIER_SIGNATURE if classifier else SIGNATURE,
            pip_requirements=PIP_REQUIREMENTS,
        )
        client.log_artifacts(run_id, str(model_dir), MODEL_ARTIFACT_PATH)
    try:
        client.get_registered_model(name)
    except MlflowException:
        client.create_registered_model(name, description=f"Fine-tuned adapters of {base.name} registered by "
                                       f"adapterflow. Base model: {base_model_provenance(base.name)}.")
    source = f"{client.get_run(run_id).info.artifact_uri}/{MODEL_ARTIFACT_PATH}"
    version = client.create_model_version(name, source, run_id=run_id, tags=tags, description=description)
    return str(version.version), f"models:/{name}/{version.version}"


def find_identical_version(client: MlflowClient, name: str, adapter_sha256: str) -> str | None:
    """The existing version whose trained content hashes to `adapter_sha256`, if any (the oldest one)."""
    matches = [int(version.version) for version in client.search_model_versions(f"name='{name}'")
               if version.tags.get(TAG_ADAPTER_SHA) == adapter_sha256]
    return str(min(matches)) if matches else None


def current_user() -> str:
    """Who is moving an alias, for the record: the login name, or $USER where there is none."""
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return os.environ.get("USER", "unknown")


def champion_history(client: MlflowClient, name: str) -> list[dict[str, str]]:
    """The versions that held `champion`, oldest first (see adapterflow.registry.history)."""
    model = client.get_registered_model(name)
    return parse_history(model.tags.get(TAG_CHAMPION_HISTORY), model.aliases.get(ALIAS_CHAMPION),
                         model.aliases.get(ALIAS_PREVIOUS_CHAMPION))


def set_aliases(client: MlflowClient, name: str, aliases: dict[str, str], reason: str = "") -> None:
    """Point the aliases at their versions; a move of `champion` is added to the champion history."""
    history = champion_history(client, name) if ALIAS_CHAMPION in aliases else None
    for alias, version in aliases.items():
        client.set_registered_model_alias(name, alias, str(version))
    if history is not None:
        at = datetime.now(timezone.utc).isoformat(timespec="seconds")
        updated = with_champion(history, str(aliases[ALIAS_CHAMPION]), at, current_user(), reason)
        client.set_registered_model_tag(name, TAG_CHAMPION_HISTORY, dump_history(updated))


def apply_rollback(client: MlflowClient, name: str, rollback: Rollback) -> None:
    """Move `champion` back and `previous-champion` with it, and store the shortened history."""
    client.set_registered_model_alias(name, ALIAS_CHAMPION, rollback.to_version)
    if rollback.previous is None:
        if alias_version(client, name, ALIAS_PREVIOUS_CHAMPION) is not None:
            client.delete_registered_model_alias(name, ALIAS_PREVIOUS_CHAMPION)
    else:
        client.set_registered_model_alias(name, ALIAS_PREVIOUS_CHAMPION, rollback.previous)
    client.set_registered_model_tag(name, TAG_CHAMPION_HISTORY, dump_history(rollback.history))


def move_champion_if_unchanged(
    client: MlflowClient, name: str, expected: str | None, aliases: dict[str, str], reason: str = "",
) -> tuple[bool, str | None]:
    """Compare-and-set: set `aliases` (a `champion` move) only if `champion` still points at `expected` (None: no
    champion), read right before the move. Returns (moved, the version champion pointed at when read).

    MLflow has no atomic alias update, so a move in the instant between the read and the write is not caught;
    concurrent retrains of one model are excluded by the retrain lock, so this guards against the manual moves
    (promote, rollback) that happen while a run trains and evaluates.
    """
    now = alias_version(client, name, ALIAS_CHAMPION)
    if now != expected:
        return False, now
    set_aliases(client, name, aliases, reason)
    return True, now
