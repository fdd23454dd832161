"""infra/ for real clusters says the same as the local stack: commands, client variables, GPU requests."""

from __future__ import annotations

import configparser
import json
import re
from pathlib import Path

import pytest
import yaml

from adapterflow.stack import CLIENT_ENV_VARS, mlflow_auth
from adapterflow.stack.servers import mlflow_command, prefect_server_command, worker_command

INFRA = Path(__file__).parents[2] / "infra"


@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load((INFRA / "docker-compose.yml").read_text())


@pytest.fixture(scope="module")
def template() -> dict:
    return json.loads((INFRA / "k8s" / "cuda-work-pool.json").read_text())


def _command(service: dict) -> str:
    command = service["command"]
    return " ".join(command) if isinstance(command, list) else " ".join(command.split())


def _local(argv: list[str]) -> str:
    """The local stack's command without the path of its executable."""
    return " ".join([Path(argv[0]).name, *argv[1:]])


def test_compose_runs_the_local_stacks_servers_and_workers(compose: dict) -> None:
    services = compose["services"]
    mlflow = _command(services["mlflow"])
    assert mlflow.startswith("mlflow server ") and "--artifacts-destination s3://adapterflow/mlartifacts" in mlflow
    local_mlflow = _local(mlflow_command("db", "adapterflow", 1, auth=True))
    assert "--artifacts-destination s3://adapterflow/mlartifacts" in local_mlflow
    assert "--app-name basic-auth" in mlflow and "--app-name basic-auth" in local_mlflow
    assert services["mlflow"]["environment"]["MLFLOW_BACKEND_STORE_URI"].startswith("postgresql+psycopg2://")
    assert _command(services["prefect"]).startswith(_local(prefect_server_command(1)).split(" --host")[0])
    assert services["prefect"]["environment"]["PREFECT_SERVER_DATABASE_CONNECTION_URL"].startswith(
        "postgresql+asyncpg://")
    for pool in ("cpu", "cuda"):
        assert _command(services[f"worker-{pool}"]) == _local(worker_command(pool))
        assert _command(services[f"worker-{pool}"]).startswith(f"prefect worker start --pool {pool}")
    assert _command(services["seaweedfs"]).startswith("server ") and " -s3 " in _command(services["seaweedfs"])


def test_compose_clients_get_exactly_the_local_stacks_variables(compose: dict) -> None:
    services = compose["services"]
    for name in ("worker-cpu", "worker-cuda", "bucket"):
        assert set(CLIENT_ENV_VARS) <= set(services[name]["environment"]), name
    assert compose["x-client-env"].keys() == set(CLIENT_ENV_VARS)
    assert compose["x-client-env"]["ADAPTERFLOW_STORAGE"] == "s3://adapterflow/cache"


def test_compose_keeps_secrets_in_the_env_file(compose: dict) -> None:
    text = (INFRA / "docker-compose.yml").read_text()
    for variable in ("POSTGRES_PASSWORD", "S3_ACCESS_KEY", "S3_SECRET_KEY", "MLFLOW_ADMIN_PASSWORD",
                     "MLFLOW_FLASK_SECRET_KEY"):
        assert f"${{{variable}:?" in text
        assert re.search(rf"^{variable}=", (INFRA / ".env.example").read_text(), re.MULTILINE)
    assert compose["x-client-env"]["AWS_SECRET_ACCESS_KEY"].startswith("${")
    assert compose["x-client-env"]["MLFLOW_TRACKING_PASSWORD"].startswith("${")


def _ini(text: str) -> dict[str, str]:
    config = configparser.ConfigParser()  # as MLflow reads it
    config.read_string(text)
    return dict(config["mlflow"])


def test_compose_runs_mlflows_basic_auth_app_as_the_local_stack_does(compose: dict) -> None:
    mlflow = compose["services"]["mlflow"]
    mount = next(volume for volume in mlflow["volumes"] if volume.startswith("./mlflow-auth.ini:"))
    assert mount.split(":")[1] == mlflow["environment"]["MLFLOW_AUTH_CONFIG_PATH"]
    assert mlflow["environment"]["MLFLOW_AUTH_ADMIN_PASSWORD"] == compose["x-client-env"]["MLFLOW_TRACKING_PASSWORD"]
    assert mlflow["environment"]["PGPASSWORD"].startswith("${POSTGRES_PASSWORD:?")
    docker = _ini((INFRA / "mlflow-auth.ini").read_text())
    login = mlflow_auth.AdminLogin(mlflow_auth.ADMIN_USERNAME, "generated-password", "key")
    local = _ini(mlflow_auth.config_text("postgresql+psycopg2://postgres@/mlflow_auth?host=/run", login))
    assert local.keys() - docker.keys() == {"admin_password"}  # compose takes it from infra/.env
    assert {key: docker[key] for key in docker if key != "database_uri"} == {
        key: local[key] for key in docker if key != "database_uri"}
    assert docker["admin_username"] == compose["x-client-env"]["MLFLOW_TRACKING_USERNAME"]
    assert re.fullmatch(rf"postgresql\+psycopg2://adapterflow@postgres:5432/{mlflow_auth.DATABASE}", docker["database_uri"])
    assert f"CREATE DATABASE {mlflow_auth.DATABASE};" in (INFRA / "postgres-init.sql").read_text()


def test_only_the_cuda_worker_reserves_gpus(compose: dict) -> None:
    services = compose["services"]
    devices = services["worker-cuda"]["deploy"]["resources"]["reservations"]["devices"]
    assert devices == [{"driver": "nvidia", "count": "all", "capabilities": ["gpu"]}]
    assert "deploy" not in services["worker-cpu"]


def test_k8s_template_requests_gpu_count_gpus(template: dict) -> None:
    from prefect.server.schemas.actions import validate_base_job_template
    from prefect.utilities.templating import apply_values

    validate_base_job_template(template)  # what the Prefect server checks when the pool is created
    properties = template["variables"]["properties"]
    assert properties["gpu_count"]["default"] == 1 and properties["gpu_count"]["type"] == "integer"
    assert {"image", "env", "namespace"} <= properties.keys()
    container = template["job_configuration"]["job_manifest"]["spec"]["template"]["spec"]["containers"][0]
    assert container["resources"]["requests"]["nvidia.com/gpu"] == "{{ gpu_count }}"
    assert container["resources"]["limits"]["nvidia.com/gpu"] == "{{ gpu_count }}"
    assert container["image"] == "{{ image }}" and container["env"] == "{{ env }}"
    values = {name: spec.get("default") for name, spec in properties.items()} | {"gpu_count": 2}
    rendered = apply_values(template["job_configuration"], values)["job_manifest"]
    assert rendered["spec"]["template"]["spec"]["containers"][0]["resources"]["limits"]["nvidia.com/gpu"] == 2
