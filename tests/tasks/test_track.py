"""The run's config hash: what decides a retrain, without the settings only `adapterflow sweep` reads."""

from __future__ import annotations

from pathlib import Path

from mlflow.tracking import MlflowClient

from adapterflow.core.home import Home
from schemas.pipeline import PipelineConfig
from tasks.track import open_run
from tests.conftest import tiny_config


def test_a_sweep_section_leaves_the_config_hash_as_it_is_and_a_training_setting_does_not(
    home: Home, tiny_model_dir: Path,
) -> None:
    client = MlflowClient()
    plain = PipelineConfig.model_validate(tiny_config(tiny_model_dir))
    swept = PipelineConfig.model_validate(tiny_config(
        tiny_model_dir, sweep={"parameters": {"training.learning_rate": {"low": 1e-3, "high": 1e-2, "log": True}}}))
    faster = PipelineConfig.model_validate(tiny_config(tiny_model_dir, training={"learning_rate": 0.02}))
    hashes = [open_run(config, home, "flow-run", client=client).config_sha256 for config in (plain, swept, faster)]
    assert hashes[0] == hashes[1] != hashes[2]
