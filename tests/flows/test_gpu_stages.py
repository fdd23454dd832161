"""Training, evaluation and a sweep's trials as the GPU pool's flows, with the pool's worker played in this process:
what they need travels through the store, not the pipeline machine's files. (The cluster tests run real workers.)"""

from __future__ import annotations

from pathlib import Path

import pytest

from adapterflow.core.home import Home
from schemas import load_config
from tests.conftest import tiny_config, write_config

pytestmark = pytest.mark.usefixtures("prefect_server")


def play_the_worker(monkeypatch: pytest.MonkeyPatch, hidden: Path | None = None) -> list[tuple[str, str]]:
    """Run each flow sent to a pool in this process, as the pool's worker would, with `hidden` moved away while it
    runs (another machine doesn't have the pipeline's files); returns the (flow, pool) of every run."""
    import flows.gpu

    ran: list[tuple[str, str]] = []

    def worker(flow_name: str, config_name: str, pool: str, parameters: dict, job_variables: dict,
               pickup_timeout_s: float) -> None:
        ran.append((flow_name, pool))
        away = hidden.rename(hidden.with_name("elsewhere")) if hidden else None
        try:
            {flows.gpu.TRAIN_FLOW: flows.gpu.train_on_worker, flows.gpu.EVALUATE_FLOW: flows.gpu.evaluate_on_worker,
             flows.gpu.SEARCH_FLOW: flows.gpu.search_on_worker}[flow_name](**parameters)
        finally:
            if away:
                away.rename(hidden)

    monkeypatch.setattr(flows.gpu, "run_on_pool", worker)
    return ran


def test_a_worker_without_the_pipelines_files_evaluates_forgetting_on_the_users_general_set(
    tmp_path: Path, home: Home, tiny_model_dir: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    import flows.gpu
    from flows.finetune import finetune

    general = tmp_path / "general.txt"
    general.write_text("The river runs past the old mill.\nA cup of tea cools on the table.\nRain fell all night.\n")
    ran = play_the_worker(monkeypatch, hidden=general)
    config = tiny_config(tiny_model_dir, execution={"device": "cpu", "mode": "distributed"},
                         evaluation={"general_set": str(general), "general_passages": 3})
    summary = finetune(load_config(write_config(tmp_path, config)))

    assert ran == [(flows.gpu.TRAIN_FLOW, "cuda"), (flows.gpu.EVALUATE_FLOW, "cuda")]
    for model in ("base", "candidate"):
        assert summary["metrics"][model]["general_perplexity"] > 1
    assert "forgetting" in summary["metrics"]["candidate"]


def test_a_sweep_in_distributed_mode_runs_its_trials_as_one_flow_on_the_gpu_pool(
    tmp_path: Path, home: Home, tiny_model_dir: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    import flows.gpu
    from flows.sweep import sweep

    ran = play_the_worker(monkeypatch)
    config = tiny_config(tiny_model_dir, execution={"device": "cpu", "mode": "distributed"},
                         training={"max_steps": 4}, sweep={"parameters": {"method.r": {"choices": [2, 4]}},
                                                          "eval_steps": 2, "sampler": "random", "pruner": "none"})
    summary = sweep(load_config(write_config(tmp_path, config)), trials=2)

    assert ran == [(flows.gpu.SEARCH_FLOW, "cuda")]  # all trials in one flow run on the pool, none here
    assert [trial["state"] for trial in summary["trials"]] == ["complete", "complete"]
    assert load_config(summary["best_config"]).method.r == summary["best"]["values"]["method.r"]
