"""Deployments: what `deploy` creates, the prefect.yaml that matches it, and a GPU pool nobody serves."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from adapterflow.cli.deploy import deployment_specs, prefect_yaml
from adapterflow.cli.main import app
from adapterflow.core.errors import AdapterflowError
from schemas import load_config
from tests.conftest import tiny_config, write_config

ROOT = Path(__file__).resolve().parent.parent
DEMO = ROOT / "configs" / "smollm2_lora_cpu.yaml"
PREFECT_YAML_COMMAND = ["execution.mode=distributed"], "0 3 * * 1", "Europe/Berlin"


def test_local_mode_deploys_the_pipeline_only_and_distributed_mode_adds_the_gpu_flows() -> None:
    local = deployment_specs(load_config(DEMO), None, "UTC")
    assert [(s.full_name, s.work_pool) for s in local] == [("adapterflow-finetune/stdlib-docs-assistant", "cpu")]
    overrides = ["execution.mode=distributed", "execution.pools.gpu=a100",
                 "execution.gpu_job_variables={env: {X: '1'}}"]
    distributed = deployment_specs(load_config(DEMO, overrides), "0 3 * * 1", "UTC")
    assert [(s.full_name, s.work_pool) for s in distributed] == [
        ("adapterflow-finetune/stdlib-docs-assistant", "cpu"), ("adapterflow-train/stdlib-docs-assistant", "a100"),
        ("adapterflow-evaluate/stdlib-docs-assistant", "a100")]
    assert distributed[1].job_variables == {"env": {"X": "1"}} and distributed[0].cron == "0 3 * * 1"
    assert distributed[0].parameters["config"]["execution"]["mode"] == "distributed"
    swept = deployment_specs(load_config(ROOT / "configs" / "smollm2_lora_sweep_cpu.yaml", overrides), None, "UTC")
    assert [(s.full_name, s.work_pool) for s in swept][-1] == ("adapterflow-search/stdlib-docs-assistant", "a100")
    assert swept[-1].entrypoint == "flows/gpu.py:search_on_worker"


def test_the_repositorys_prefect_yaml_is_what_deploy_creates_for_the_demo() -> None:
    overrides, cron, timezone = PREFECT_YAML_COMMAND
    expected = yaml.safe_load(prefect_yaml(deployment_specs(load_config(DEMO, overrides), cron, timezone), ""))
    committed = yaml.safe_load((ROOT / "prefect.yaml").read_text())
    assert committed == expected, "regenerate: adapterflow deploy configs/smollm2_lora_cpu.yaml --set " \
        "execution.mode=distributed --cron '0 3 * * 1' --timezone Europe/Berlin --prefect-yaml prefect.yaml"


@pytest.mark.parametrize(("arguments", "message"), [
    (["--cron", "0 99 * * *"], "Invalid cron"),
    (["--cron", "0 3 * * 1", "--timezone", "Mars/Olympus"], "not a known time zone"),
])
def test_a_bad_schedule_is_a_usage_error(arguments: list[str], message: str) -> None:
    result = CliRunner().invoke(app, ["deploy", str(DEMO), *arguments])
    assert result.exit_code == 2 and message in result.output and "Traceback" not in result.output


def test_deploy_without_a_server_says_how_to_get_one(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PREFECT_API_URL", raising=False)
    result = CliRunner().invoke(app, ["deploy", str(DEMO)])
    assert result.exit_code == 1 and "PREFECT_API_URL is not set" in result.output


@pytest.mark.usefixtures("prefect_server", "home")
def test_a_gpu_stage_nobody_picks_up_times_out_naming_the_pool(tmp_path: Path, tiny_model_dir: Path) -> None:
    from prefect.client.orchestration import get_client

    from adapterflow.cli.deploy import deploy_config
    from flows.finetune import finetune

    config = load_config(write_config(tmp_path, tiny_config(tiny_model_dir, execution={
        "device": "cpu", "mode": "distributed", "pools": {"default": "cpu-test", "gpu": "cuda-nobody"},
        "pickup_timeout_s": 3})))
    deploy_config(config, None, "UTC")
    with pytest.raises(AdapterflowError, match="no worker of work pool 'cuda-nobody' picked up .* no online worker"):
        finetune(config)
    with get_client(sync_client=True) as client:
        runs = client.read_flow_runs()
    child = next(run for run in runs if run.work_pool_name == "cuda-nobody")
    assert child.state.is_cancelled() and child.parent_task_run_id is not None


def test_secrets_in_the_gpu_job_variables_are_refused() -> None:
    from adapterflow.core.errors import ConfigError

    with pytest.raises(ConfigError, match="AWS_SECRET_ACCESS_KEY looks secret"):
        load_config(DEMO, ["execution.gpu_job_variables={env: {AWS_SECRET_ACCESS_KEY: x, CUDA_VISIBLE_DEVICES: '0'}}"])
    assert load_config(DEMO, ["execution.gpu_job_variables={env: {CUDA_VISIBLE_DEVICES: '0'}}"])


def test_distributed_mode_names_the_services_a_worker_elsewhere_could_not_reach() -> None:
    from flows.gpu import machine_local_services

    assert machine_local_services("s3://bucket/cache", "http://mlflow:5000") == []
    found = machine_local_services("/home/me/.adapterflow/cache", "sqlite:////home/me/.adapterflow/mlflow.db")
    assert len(found) == 2 and "execution.storage" in found[0] and "MLFLOW_TRACKING_URI" in found[1]
