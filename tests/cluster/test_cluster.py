"""The same config across machines, on real servers: Postgres, an S3 store, an MLflow server, a Prefect server
with its scheduler, and a `cpu` and a `cuda` process worker, each worker with its own ADAPTERFLOW_HOME.

The stack is the session's `cluster` fixture (tests/conftest.py): started once, stopped by PID at the end.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import boto3
import pytest
from mlflow.tracking import MlflowClient

from schemas import load_config
from tests.conftest import tiny_config, write_config

pytestmark = pytest.mark.servers

MODEL = "tiny-cluster"
SCHEDULED = "tiny-scheduled"
BROKEN = "tiny-broken"
AUTH_MODEL = "tiny-auth"
SWEPT = "tiny-swept"
RUN_TIMEOUT_S = 240


def cli(env: dict[str, str], home: Path, *args: str) -> str:
    """Run the adapterflow CLI as a user would, against the stack."""
    full_env = {**os.environ, **env, "ADAPTERFLOW_HOME": str(home)}
    done = subprocess.run([sys.executable, "-m", "adapterflow.cli.main", *args], env=full_env, capture_output=True,
                          text=True, timeout=180)
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


def prefect_client(env: dict[str, str]):  # noqa: ANN201
    from prefect.client.orchestration import SyncPrefectClient

    return SyncPrefectClient(env["PREFECT_API_URL"])


def start_deployment(env: dict[str, str], name: str, parameters: dict | None = None) -> str:
    with prefect_client(env) as client:
        deployment = client.read_deployment_by_name(name)
        return str(client.create_flow_run_from_deployment(deployment.id, parameters=parameters).id)


def wait_for(env: dict[str, str], flow_run_ids: list[str], timeout_s: float = RUN_TIMEOUT_S) -> list:
    """The flow runs once all are final; fails with their states when they don't get there in time."""
    deadline = time.monotonic() + timeout_s
    with prefect_client(env) as client:
        while True:
            runs = [client.read_flow_run(run_id) for run_id in flow_run_ids]
            if all(run.state is not None and run.state.is_final() for run in runs):
                return runs
            assert time.monotonic() < deadline, [(run.name, run.state) for run in runs]
            time.sleep(1)


def flow_runs_of(env: dict[str, str], deployment: str) -> list:
    from prefect.client.schemas.filters import DeploymentFilter, DeploymentFilterId

    with prefect_client(env) as client:
        found = client.read_deployment_by_name(deployment)
        return client.read_flow_runs(deployment_filter=DeploymentFilter(id=DeploymentFilterId(any_=[found.id])))


def train_spans(env: dict[str, str], flow_run_ids: list[str]) -> list[tuple]:
    """(start, end) of the train task of each flow run."""
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId, TaskRunFilter, TaskRunFilterName

    with prefect_client(env) as client:
        tasks = client.read_task_runs(
            flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=flow_run_ids)),
            task_run_filter=TaskRunFilter(name=TaskRunFilterName(like_="train")),
        )
    return [(task.start_time, task.end_time) for task in tasks if task.name.startswith("train")]


def mlflow_run_of(client: MlflowClient, flow_run_id: str):  # noqa: ANN201
    experiments = [e.experiment_id for e in client.search_experiments()]
    runs = client.search_runs(experiments, filter_string=f"tags.`prefect.flow_run_id` = '{flow_run_id}'")
    assert len(runs) == 1, runs
    return runs[0]


def bucket_keys(env: dict[str, str], prefix: str) -> list[str]:
    s3 = boto3.client("s3", endpoint_url=env["AWS_ENDPOINT_URL"], aws_access_key_id=env["AWS_ACCESS_KEY_ID"],
                      aws_secret_access_key=env["AWS_SECRET_ACCESS_KEY"], region_name="us-east-1")
    pages = s3.get_paginator("list_objects_v2").paginate(Bucket="adapterflow", Prefix=prefix)
    return [item["Key"] for page in pages for item in page.get("Contents", [])]


def test_distributed_run_trains_on_the_cuda_pool_through_the_bucket_and_retrains_only_on_change(
    cluster: dict, tiny_model_dir: Path
) -> None:
    env, root = cluster["env"], cluster["root"]
    config = tiny_config(tiny_model_dir, execution={"device": "cpu", "mode": "distributed",
                                                          "pickup_timeout_s": 120},
                         training={"checkpoint_steps": 4})  # checkpoints at steps 4, 8, 12 through the bucket
    config["name"] = MODEL
    config_path = write_config(root, config, "cluster.yaml")
    deployed = cli(env, root / "deployer-home", "deploy", str(config_path))
    assert f"adapterflow-train/{MODEL} on work pool cuda" in deployed, deployed

    first = wait_for(env, [start_deployment(env, f"adapterflow-finetune/{MODEL}")])[0]
    assert first.state.is_completed(), first.state
    assert first.work_pool_name == "cpu"
    trains = flow_runs_of(env, f"adapterflow-train/{MODEL}")
    evaluations = flow_runs_of(env, f"adapterflow-evaluate/{MODEL}")
    assert len(trains) == 1 and len(evaluations) == 1
    for child in (*trains, *evaluations):
        assert child.work_pool_name == "cuda" and child.state.is_completed()
        assert child.parent_task_run_id is not None  # a subflow of the pipeline run

    # The cuda worker has its own home: it fetched the tokenized data from the bucket and trained there.
    (bucket_copies,) = (root / "cuda-home" / "cache" / "mirrors").iterdir()  # this machine's copies of the bucket
    adapters = list((bucket_copies / "adapters").glob("*/adapter/adapter_model.safetensors"))
    assert len(adapters) == 1 and list((bucket_copies / "tokenized").glob("*/train.parquet"))
    key = adapters[0].parent.parent.name
    keys = bucket_keys(env, "cache/")
    assert f"cache/adapters/{key}/metrics.json" in keys
    assert f"cache/adapters/{key}/adapter/adapter_model.safetensors" in keys
    assert any(k.startswith("cache/tokenized/") and k.endswith("/stats.json") for k in keys)

    tracking = MlflowClient(env["MLFLOW_TRACKING_URI"])
    run = mlflow_run_of(tracking, str(first.id))
    assert run.info.status == "FINISHED"
    assert "eval/candidate/perplexity" in run.data.metrics and "train/loss" in run.data.metrics
    # the newest checkpoint was uploaded to the bucket, and every checkpoint removed once the adapter was stored
    assert run.data.tags["adapterflow.checkpoint"] == f"{env['ADAPTERFLOW_STORAGE']}/checkpoints/{key}/checkpoint-12"
    assert not [k for k in keys if k.startswith("cache/checkpoints/")]
    versions = tracking.search_model_versions(f"name='{MODEL}'")
    assert [str(v.version) for v in versions] == ["1"]
    artifacts = bucket_keys(env, "mlartifacts/")  # through the MLflow server's artifact proxy
    assert any(k.endswith("model/artifacts/adapter/adapter_model.safetensors") for k in artifacts)

    # Nothing changed: the next run is a no-op, with no training and no new version.
    again = wait_for(env, [start_deployment(env, f"adapterflow-finetune/{MODEL}")])[0]
    assert again.state.is_completed(), again.state
    noop = mlflow_run_of(tracking, str(again.id))
    assert noop.data.tags.get("adapterflow.skipped") == "unchanged", noop.data.tags
    assert len(flow_runs_of(env, f"adapterflow-train/{MODEL}")) == 1
    assert [str(v.version) for v in tracking.search_model_versions(f"name='{MODEL}'")] == ["1"]

    # A run whose training fails on the cuda worker (BitFit on a model without biases) fails the pipeline with
    # the child's reason. It runs alongside the next two.
    broken = {**config, "name": BROKEN, "method": {"type": "bitfit"}}
    cli(env, root / "deployer-home", "deploy", str(write_config(root, broken, "broken.yaml")))
    failing = start_deployment(env, f"adapterflow-finetune/{BROKEN}")

    # Two runs of one model started at once, both with something to train (in the cpu worker's processes, to
    # keep the test short): their training never overlaps.
    pair = []
    for rate in (0.02, 0.03):
        changed = load_config(config_path, [f"training.learning_rate={rate}", "execution.mode=local"])
        pair.append(start_deployment(env, f"adapterflow-finetune/{MODEL}", {"config": changed.model_dump(mode="json")}))
    assert all(run.state.is_completed() for run in wait_for(env, pair, 2 * RUN_TIMEOUT_S))
    failed = wait_for(env, [failing])[0]
    assert failed.state.is_failed() and "adapterflow-train" in failed.state.message
    assert "no biases" in failed.state.message and "pool 'cuda'" in failed.state.message, failed.state.message
    failed_run = mlflow_run_of(tracking, str(failed.id))
    assert failed_run.info.status == "FAILED" and "no biases" in failed_run.data.tags["adapterflow.failure"]

    spans = sorted(train_spans(env, pair))
    assert len(spans) == 2 and spans[0][1] <= spans[1][0], spans
    assert len(tracking.search_model_versions(f"name='{MODEL}'")) == 3


@pytest.mark.slow  # 100 s on 2 cores; tests/flows/test_gpu_stages.py covers the search flow on the pool in-process
def test_a_sweeps_trials_train_on_the_cuda_pool_in_nested_runs_on_the_tracking_server(
    cluster: dict, tiny_model_dir: Path
) -> None:
    env, root = cluster["env"], cluster["root"]
    config = tiny_config(tiny_model_dir, execution={"device": "cpu", "mode": "distributed", "pickup_timeout_s": 120},
                         training={"max_steps": 6},
                         sweep={"parameters": {"training.learning_rate": {"choices": [0.01, 0.03]}},
                                "eval_steps": 3, "sampler": "random", "pruner": "none"})
    config["name"] = SWEPT
    config_path = write_config(root, config, "swept.yaml")
    deployed = cli(env, root / "deployer-home", "deploy", str(config_path))
    assert f"adapterflow-search/{SWEPT} on work pool cuda" in deployed, deployed

    summary_path = root / "sweep-summary.json"
    cli(env, root / "sweeper-home", "sweep", str(config_path), "--trials", "2", "--summary-json", str(summary_path))
    summary = json.loads(summary_path.read_text())
    (search,) = flow_runs_of(env, f"adapterflow-search/{SWEPT}")
    assert search.work_pool_name == "cuda" and search.state.is_completed() and search.parent_task_run_id is not None
    tracking = MlflowClient(env["MLFLOW_TRACKING_URI"])
    parent = tracking.get_run(summary["mlflow_run_id"])
    trials = tracking.search_runs([parent.info.experiment_id],
                                  filter_string=f"tags.`mlflow.parentRunId` = '{parent.info.run_id}'")
    assert len(trials) == 2 and {t.data.tags["adapterflow.trial_state"] for t in trials} == {"complete"}
    assert parent.info.status == "FINISHED" and parent.data.metrics["sweep/trials_complete"] == 2
    # the trials trained on the cuda worker, from the bucket
    (bucket_copies,) = (root / "cuda-home" / "cache" / "mirrors").iterdir()
    trained = {adapter.parent.parent.name for adapter in (bucket_copies / "adapters").glob("*/adapter/*.safetensors")}
    keys = bucket_keys(env, "cache/adapters/")
    assert all(f"cache/adapters/{key}/metrics.json" in keys for key in trained) and len(trained) >= 2
    best = load_config(summary["best_config"])
    assert best.sweep is None and best.training.learning_rate == summary["best"]["values"]["training.learning_rate"]


@pytest.fixture(scope="module", autouse=True)
def scheduled_soon(cluster: dict, tiny_model_dir: Path) -> str:
    """A deployment on an hourly cron whose minute is two minutes away, deployed as the module starts: the wait for
    that minute overlaps the other tests instead of adding up to a minute to the suite. Returns its cron."""
    env, root = cluster["env"], cluster["root"]
    config = tiny_config(tiny_model_dir, execution={"device": "cpu"})
    config["name"] = SCHEDULED
    config_path = write_config(root, config, "scheduled.yaml")
    minute = (datetime.now(timezone.utc) + timedelta(minutes=2)).minute
    cron = f"{minute} * * * *"
    deployed = cli(env, root / "deployer-home", "deploy", str(config_path), "--cron", cron)
    assert f"schedule {cron} (UTC)" in deployed
    return cron


def test_a_cron_schedule_fires_on_the_server_and_its_run_completes(cluster: dict, scheduled_soon: str) -> None:
    env = cluster["env"]
    deadline = time.monotonic() + 200  # its minute (at most three away), then the run itself
    while True:
        runs = [r for r in flow_runs_of(env, f"adapterflow-finetune/{SCHEDULED}") if r.state.is_completed()]
        if runs:
            break
        assert time.monotonic() < deadline, flow_runs_of(env, f"adapterflow-finetune/{SCHEDULED}")
        time.sleep(2)
    assert runs[0].auto_scheduled
    assert runs[0].expected_start_time.minute == int(scheduled_soon.split()[0])
    run = mlflow_run_of(MlflowClient(env["MLFLOW_TRACKING_URI"]), str(runs[0].id))
    assert run.info.status == "FINISHED"


def test_a_read_only_user_reads_runs_but_cannot_move_an_alias(cluster: dict, monkeypatch: pytest.MonkeyPatch) -> None:
    """MLflow's basic-auth app on the stack: no login, no answer; a user with the default READ permission reads a
    run but may not move `champion` until the admin (the login the stack exports) grants EDIT on the model. No log
    shows the admin's password."""
    import secrets

    import httpx
    import mlflow.server
    from mlflow.exceptions import MlflowException

    env = cluster["env"]
    uri = env["MLFLOW_TRACKING_URI"]
    anonymous = httpx.get(f"{uri}/api/2.0/mlflow/experiments/search", params={"max_results": 1}, timeout=60)
    assert anonymous.status_code == 401 and anonymous.headers["WWW-Authenticate"].startswith("Basic")  # a browser asks

    admin = MlflowClient(uri)  # logs in with MLFLOW_TRACKING_USERNAME/PASSWORD, exported by the fixture
    run = admin.create_run(admin.create_experiment("auth-check"))
    admin.log_metric(run.info.run_id, "eval/candidate/perplexity", 3.5)
    admin.create_registered_model(AUTH_MODEL)
    first, second = (admin.create_model_version(AUTH_MODEL, f"runs:/{run.info.run_id}/model", run_id=run.info.run_id)
                     for _ in range(2))
    admin.set_registered_model_alias(AUTH_MODEL, "champion", first.version)

    password = secrets.token_urlsafe(16)
    users = mlflow.server.get_app_client("basic-auth", tracking_uri=uri)
    assert not users.create_user("reader", password).is_admin
    with monkeypatch.context() as as_reader:
        as_reader.setenv("MLFLOW_TRACKING_USERNAME", "reader")
        as_reader.setenv("MLFLOW_TRACKING_PASSWORD", password)
        reader = MlflowClient(uri)
        assert reader.get_run(run.info.run_id).data.metrics == {"eval/candidate/perplexity": 3.5}
        with pytest.raises(MlflowException) as denied:
            reader.set_registered_model_alias(AUTH_MODEL, "champion", second.version)
    assert denied.value.error_code == "PERMISSION_DENIED" and denied.value.get_http_status_code() == 403
    assert admin.get_model_version_by_alias(AUTH_MODEL, "champion").version == first.version

    users.grant_user_permission("reader", "registered_model", AUTH_MODEL, "EDIT")  # as the admin
    with monkeypatch.context() as as_reader:
        as_reader.setenv("MLFLOW_TRACKING_USERNAME", "reader")
        as_reader.setenv("MLFLOW_TRACKING_PASSWORD", password)
        MlflowClient(uri).set_registered_model_alias(AUTH_MODEL, "champion", second.version)
    assert admin.get_model_version_by_alias(AUTH_MODEL, "champion").version == second.version

    logs = sorted((cluster["stack_root"] / "logs").glob("*.log"))
    assert logs and not [log.name for log in logs if env["MLFLOW_TRACKING_PASSWORD"] in log.read_text()]
