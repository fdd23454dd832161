"""Registry side effects against a real (SQLite) MLflow registry: idempotent registration, champion lookup, aliases."""

from __future__ import annotations

from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from adapterflow.core.errors import AdapterflowError
from adapterflow.core.home import Home
from adapterflow.models.base import weights_sha256
from adapterflow.registry import find_champion, register_adapter, set_aliases
from adapterflow.storage.records import BaseModelRef, EvalResult, RegisteredVersion, RunContext
from schemas.registry import PromotionPolicy
from tasks.promote import promote
from tests.conftest import ASSETS


@pytest.fixture
def adapter_dir(tmp_path: Path, tiny_model_dir: Path) -> Path:
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    model = get_peft_model(AutoModelForCausalLM.from_pretrained(tiny_model_dir), LoraConfig(r=2, target_modules="all-linear"))
    model.save_pretrained(tmp_path / "adapter")
    return tmp_path / "adapter"


def tiny_base(folder: Path) -> BaseModelRef:
    return BaseModelRef(name=str(folder), path=str(folder), sha256=weights_sha256(folder, Home.from_env()))


def register_version(client: MlflowClient, adapter_dir: Path, tiny_model_dir: Path) -> tuple[str, str]:
    experiment = client.create_experiment(f"e{len(client.search_experiments())}")
    run_id = client.create_run(experiment).info.run_id
    base = tiny_base(tiny_model_dir)
    version, _ = register_adapter(client, run_id, "m", str(adapter_dir), base, {"adapterflow.method": "lora"}, "d")
    return run_id, version


def test_registration_is_idempotent_per_run_and_champion_is_found(home: Home, adapter_dir: Path, tiny_model_dir: Path) -> None:
    client = MlflowClient()
    assert find_champion("m", client) is None
    run_id, version = register_version(client, adapter_dir, tiny_model_dir)
    base = tiny_base(tiny_model_dir)
    again, _ = register_adapter(client, run_id, "m", str(adapter_dir), base, {}, "d")
    assert version == again == "1"
    assert find_champion("m", client) is None  # registered, but not promoted
    set_aliases(client, "m", {"champion": "1"})
    champion = find_champion("m", client)
    assert champion.version == "1" and champion.base_sha256 == base.sha256 and champion.base_path == str(tiny_model_dir)
    assert (Path(champion.adapter_dir) / "adapter_model.safetensors").is_file()


def test_every_load_of_a_version_checks_its_base_weights(home: Home, adapter_dir: Path, tiny_model_dir: Path) -> None:
    import shutil

    from safetensors.torch import load_file, save_file

    from adapterflow.registry.pyfunc import base_model_folder

    copy = home.root / "base-copy"
    shutil.copytree(tiny_model_dir, copy)
    config = {"base_model": str(copy), "base_model_path": str(copy), "base_model_sha256": tiny_base(copy).sha256}
    assert base_model_folder(config) == copy
    weights = load_file(str(copy / "model.safetensors"))
    name = next(iter(weights))
    weights[name] = weights[name] + 1  # the folder the adapter was trained on now holds other weights
    save_file(weights, str(copy / "model.safetensors"), metadata={"format": "pt"})
    with pytest.raises(AdapterflowError, match="the adapter was trained on"):
        base_model_folder(config)


def test_promotion_moves_champion_and_keeps_the_previous_one(home: Home, adapter_dir: Path, tiny_model_dir: Path) -> None:
    client = MlflowClient()
    for _ in range(3):
        register_version(client, adapter_dir, tiny_model_dir)
    set_aliases(client, "m", {"champion": "1"})
    run = RunContext(run_name="r", run_dir=str(home.root), home=str(home.root),
                     mlflow_run_id=client.create_run(client.create_experiment("p")).info.run_id,
                     experiment="p", config_sha256="c", storage=str(home.cache))
    client.log_metric(run.mlflow_run_id, "data/validation_success", 1.0)  # the gate requires passed validation

    def evaluation(candidate: float) -> EvalResult:
        metrics = {"base": {"perplexity": 30.0}, "champion": {"perplexity": 10.0}, "candidate": {"perplexity": candidate}}
        return EvalResult(metrics=metrics, champion_version="1", samples_path=None)

    held = promote.fn(RegisteredVersion(model_name="m", version="2", model_uri=""), evaluation(9.95), PromotionPolicy(), run)
    assert not held.promoted and held.aliases == {"champion": "1"}
    assert "not promoted" in client.get_model_version("m", "2").tags["adapterflow.promotion"]

    won = promote.fn(RegisteredVersion(model_name="m", version="3", model_uri=""), evaluation(8.0), PromotionPolicy(), run)
    assert won.promoted and won.aliases == {"champion": "3", "previous-champion": "1"}
    assert client.get_run(run.mlflow_run_id).data.metrics["registry/promoted"] == 1.0


def test_the_builtin_base_model_is_disclosed_as_dequantised_from_a_gguf(home: Home, adapter_dir: Path) -> None:
    from schemas.pipeline import PipelineConfig
    from tasks.register import version_description

    evaluation = EvalResult(metrics={"base": {"perplexity": 30.0}, "candidate": {"perplexity": 20.0}},
                            champion_version=None, samples_path=None)
    config = PipelineConfig.model_validate({"name": "m", "data": {"sources": [{"path": str(ASSETS / "chat.jsonl")}]}})
    assert config.base_model.name == "smollm2-135m-instruct"
    description = version_description(evaluation, config)
    assert "dequantised to float32 from the 4-bit Q4_1 GGUF" in description
    assert "| candidate | 20.0000 |" in description

    client = MlflowClient()
    run_id = client.create_run(client.create_experiment("gguf")).info.run_id
    builtin = BaseModelRef(name="smollm2-135m-instruct", path="/nowhere", sha256="abc")
    register_adapter(client, run_id, "disclosed", str(adapter_dir), builtin, {}, description)
    assert "Q4_1 GGUF" in client.get_registered_model("disclosed").description
