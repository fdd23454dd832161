"""Base model resolution: local folders are hashed once, the builtin SmolLM2 is materialised once."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from adapterflow.core.errors import AdapterflowError
from adapterflow.core.home import Home
from adapterflow.models.base import MANIFEST, resolve_base_model
from schemas.base_model import BaseModelConfig


def test_local_folder_is_hashed_and_the_hash_remembered(tmp_path: Path, tiny_model_dir: Path) -> None:
    home = Home(tmp_path)
    config = BaseModelConfig.model_validate({"name": str(tiny_model_dir)})
    first = resolve_base_model(config, home)
    assert first.path == str(tiny_model_dir) and len(first.sha256) == 64
    assert len(list((home.cache / "model_hashes").iterdir())) == 1
    assert resolve_base_model(config, home).sha256 == first.sha256


def test_hub_ids_fail_fast_offline(tmp_path: Path) -> None:
    with pytest.raises(AdapterflowError, match="can't fetch"):
        resolve_base_model(BaseModelConfig(name="hf://someone/some-model"), Home(tmp_path))


def test_a_missing_folder_is_an_error_never_a_download_and_remote_code_is_refused(tmp_path: Path) -> None:
    from pydantic import ValidationError

    context = {"config_dir": tmp_path}
    with pytest.raises(ValidationError, match="no such folder: .*models/my-model; a hub model is written hf://models/my-model"):
        BaseModelConfig.model_validate({"name": "models/my-model"}, context=context)
    with pytest.raises(ValidationError, match="runs no code shipped with a model"):
        BaseModelConfig.model_validate({"name": "smollm2-135m-instruct", "trust_remote_code": True})
    assert BaseModelConfig.model_validate({"name": "hf://org/model"}).hub_id == "org/model"


@pytest.mark.slow
def test_builtin_smollm2_is_materialised_once_as_safetensors(tmp_path: Path, capfd: pytest.CaptureFixture[str]) -> None:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    home = Home(tmp_path)
    reference = resolve_base_model(BaseModelConfig(), home)
    printed = "".join(capfd.readouterr())
    assert "%|" not in printed and "it/s" not in printed  # no raw progress bars from the conversion or the save
    folder = Path(reference.path)
    assert (folder / "model.safetensors").is_file() and (folder / "tokenizer.json").is_file()
    assert json.loads((folder / MANIFEST).read_text())["sha256"] == reference.sha256
    tokenizer = AutoTokenizer.from_pretrained(folder)
    assert "<|im_start|>" in tokenizer.chat_template
    model = AutoModelForCausalLM.from_pretrained(folder)
    assert 130e6 < sum(p.numel() for p in model.parameters()) < 140e6
    assert resolve_base_model(BaseModelConfig(), home).sha256 == reference.sha256  # second call reuses the folder



def test_a_worker_finds_the_base_model_by_name_and_refuses_other_weights(
    tmp_path: Path, tiny_model_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from adapterflow.models.base import base_model_here

    monkeypatch.setenv("ADAPTERFLOW_HOME", str(tmp_path / "worker-home"))  # the worker's own home
    config = BaseModelConfig.model_validate({"name": str(tiny_model_dir)})
    pipeline = resolve_base_model(config, Home(tmp_path / "pipeline-home"))
    assert base_model_here(pipeline.model_copy(update={"path": "/pipeline/machine/only"}), config) == pipeline
    with pytest.raises(AdapterflowError, match="weights sha256"):
        base_model_here(pipeline.model_copy(update={"sha256": "0" * 64}), config)


def test_a_folder_with_pickle_weights_only_is_refused(tmp_path: Path, tiny_model_dir: Path) -> None:
    import shutil

    folder = tmp_path / "pickled"
    shutil.copytree(tiny_model_dir, folder)
    (folder / "model.safetensors").rename(folder / "pytorch_model.bin")
    config = BaseModelConfig.model_validate({"name": str(folder)})
    with pytest.raises(AdapterflowError, match="holds only pickle weights \\(pytorch_model.bin\\)"):
        resolve_base_model(config, Home(tmp_path))
