"""Training and evaluation as the GPU pool's flows, with the pool's worker played in this process: what they
need travels through the store, not the pipeline machine's files."""

from __future__ import annotations

from pathlib import Path

import pytest

from adapterflow.home import Home
from schemas import load_config
from tests.conftest import tiny_config, write_config

pytestmark = pytest.mark.usefixtures("prefect_server")


def test_a_worker_without_the_pipelines_files_evaluates_forgetting_on_the_users_general_set(
    tmp_path: Path, home: Home, tiny_model_dir: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    import flows.gpu
    from flows.finetune import finetune

    general = tmp_path / "general.txt"
    general.write_text("The river runs past the old mill.\nA cup of tea cools on the table.\nRain fell all night.\n")
    ran = []

    def worker(flow_name: str, config_name: str, pool: str, parameters: dict, job_variables: dict,
               pickup_timeout_s: float) -> None:
        ran.append((flow_name, pool))
        away = general.rename(tmp_path / "elsewhere.txt")  # another machine: the pipeline's file isn't there
        try:
            {flows.gpu.TRAIN_FLOW: flows.gpu.train_on_worker,
             flows.gpu.EVALUATE_FLOW: flows.gpu.evaluate_on_worker}[flow_name](**parameters)
        finally:
            away.rename(general)

    monkeypatch.setattr(flows.gpu, "run_on_pool", worker)
    config = tiny_config(tiny_model_dir, execution={"device": "cpu", "mode": "distributed"},
                         evaluation={"general_set": str(general), "general_passages": 3})
    summary = finetune(load_config(write_config(tmp_path, config)))

    assert ran == [(flows.gpu.TRAIN_FLOW, "cuda"), (flows.gpu.EVALUATE_FLOW, "cuda")]
    for model in ("base", "candidate"):
        assert summary["metrics"][model]["general_perplexity"] > 1
    assert "forgetting" in summary["metrics"]["candidate"]
