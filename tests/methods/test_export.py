"""Merged export: LoRA-family adapters fold into standalone weights with the same logits; others say why not."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from mlflow.tracking import MlflowClient
from typer.testing import CliRunner

from adapterflow.cli.main import app
from adapterflow.core.errors import AdapterflowError
from adapterflow.core.home import Home
from adapterflow.methods.export import export_merged
from adapterflow.registry import register_adapter
from adapterflow.training.trainer import train_adapter
from tests.conftest import run_in_home
from tests.methods.conftest import Prepared, method_of, training_for

CPU = torch.device("cpu")
MERGEABLE = {
    "lora": {"type": "lora", "r": 4, "alpha": 8},
    "lora-dora": {"type": "lora", "r": 4, "alpha": 8, "dora": True},
    "qlora-4bit": {"type": "qlora", "r": 4, "alpha": 8},
    "ia3": {"type": "ia3"},
    "adalora": {"type": "adalora", "init_r": 6, "target_r": 2},
}


def trained(prepared: Prepared, options: dict, folder: Path) -> tuple[Path, str]:
    method = method_of(options)
    base = prepared.wide_base if method.type == "qlora" else prepared.base
    outcome = train_adapter(Path(prepared.tokenized.uri), base, method, training_for(method, "sft"), CPU, "fp32", folder)
    return outcome.output_dir, base.path


@pytest.mark.parametrize("name", MERGEABLE)
def test_merged_model_is_standalone_and_matches_the_adapter(name: str, prepared: dict, tmp_path: Path) -> None:
    artifact, base_path = trained(prepared["sft"], MERGEABLE[name], tmp_path / "run")
    check = export_merged(artifact, base_path, tmp_path / "merged", CPU)
    assert check.passed and check.max_abs_logit > 0
    assert check.relative_diff <= 1e-4
    assert (check.quantized_kernel_diff is not None) == (name == "qlora-4bit")
    files = {path.name for path in (tmp_path / "merged").iterdir()}
    assert "model.safetensors" in files and "adapter_config.json" not in files


@pytest.mark.parametrize("options", [{"type": "prompt", "num_virtual_tokens": 4}, {"type": "bottleneck", "reduction_factor": 4}])
def test_methods_that_compute_on_top_of_the_base_cannot_be_merged(options: dict, prepared: dict, tmp_path: Path) -> None:
    artifact, base_path = trained(prepared["sft"], options, tmp_path / "run")
    with pytest.raises(AdapterflowError, match="can't be merged"):
        export_merged(artifact, base_path, tmp_path / "merged", CPU)
    assert not (tmp_path / "merged").exists()


def test_export_command_merges_a_registered_version(prepared: dict, tmp_path: Path, home: Home) -> None:
    data = prepared["sft"]
    artifact, _ = trained(data, MERGEABLE["lora"], tmp_path / "run")
    with run_in_home(home) as run:
        register_adapter(MlflowClient(), run.info.run_id, "exported", str(artifact), data.base, {}, "lora")
    result = CliRunner().invoke(app, ["export", "models:/exported/1", "--merge", str(tmp_path / "merged")])
    assert result.exit_code == 0, result.output
    assert "logits match" in result.output
    assert (tmp_path / "merged" / "model.safetensors").is_file()
    missing = CliRunner().invoke(app, ["export", "models:/nothing-here/1", "--merge", str(tmp_path / "other")])
    assert missing.exit_code == 1 and "Traceback" not in missing.output
