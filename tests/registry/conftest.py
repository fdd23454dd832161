"""Registry tests: each gets conftest's fresh ADAPTERFLOW_HOME, its MLflow store copied from one made once
(creating MLflow's tables takes seconds per test), and a tiny trained LoRA artifact to register."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from adapterflow.core.home import Home


@pytest.fixture(scope="session")
def empty_store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An MLflow SQLite database with its tables made once."""
    path = tmp_path_factory.mktemp("store") / "mlflow.db"
    MlflowClient(tracking_uri=f"sqlite:///{path}").search_experiments()
    return path


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, empty_store: Path) -> Home:
    """A fresh ADAPTERFLOW_HOME whose embedded MLflow store starts as a copy of the empty store."""
    home = Home(tmp_path / "home")
    home.root.mkdir()
    shutil.copy(empty_store, home.mlflow_db)
    monkeypatch.setenv("ADAPTERFLOW_HOME", str(home.root))
    monkeypatch.setenv("MLFLOW_TRACKING_URI", home.embedded_tracking_uri)
    return home


def save_tiny_lora(tiny_model_dir: Path, folder: Path) -> Path:
    """A trained LoRA artifact as training leaves it (weights, tokenizer, manifest), saved to `folder`."""
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    from adapterflow.methods.artifacts import save_trained
    from adapterflow.methods.build import ModelSpec
    from adapterflow.models.base import load_tokenizer
    from schemas.method import LoraMethod

    model = get_peft_model(AutoModelForCausalLM.from_pretrained(tiny_model_dir), LoraConfig(r=2, target_modules="all-linear"))
    save_trained(model, load_tokenizer(tiny_model_dir), LoraMethod(type="lora"), ModelSpec(), folder)
    return folder
