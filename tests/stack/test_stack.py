"""The local stack: its pure parts, its CLI's exit codes, and one real start of every server (marked `servers`)."""

from __future__ import annotations

import base64
import configparser
import json
import os
import shlex
import socket
import stat
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import psutil
import pytest
from typer.testing import CliRunner

from adapterflow.cli.stack import stack_app
from adapterflow.core.errors import AdapterflowError
from adapterflow.stack import (
    CLIENT_ENV_VARS,
    MLFLOW_LOGIN_VARS,
    Stack,
    StackSettings,
    export_lines,
    mlflow_auth,
    objectstore,
    postgres,
    servers,
)
from adapterflow.stack.environment import client_env
from adapterflow.stack.ports import free_ports, resolve_ports
from adapterflow.stack.processes import PidFile, Recorded, is_alive, spawn, stop_groups, wait_until


def _env(login: tuple[str, str] | None = ("admin", "pass$word")) -> dict[str, str]:
    return client_env(mlflow_url="http://127.0.0.1:5001", mlflow_login=login,
                      prefect_api_url="http://127.0.0.1:4200/api", s3_endpoint="http://127.0.0.1:8333",
                      access_key="AK", secret_key="s e'cret", bucket="b")


def test_client_env_names_every_variable_once_and_exports_them_quoted() -> None:
    env = _env()
    assert tuple(env) == CLIENT_ENV_VARS
    assert (env["MLFLOW_TRACKING_USERNAME"], env["MLFLOW_TRACKING_PASSWORD"]) == ("admin", "pass$word")
    assert tuple(_env(login=None)) == tuple(name for name in CLIENT_ENV_VARS if name not in MLFLOW_LOGIN_VARS)
    assert env["AWS_ENDPOINT_URL"] == env["MLFLOW_S3_ENDPOINT_URL"] == "http://127.0.0.1:8333"
    assert env["ADAPTERFLOW_STORAGE"] == "s3://b/cache" and env["AWS_DEFAULT_REGION"] == "us-east-1"
    lines = export_lines(env).splitlines()
    assert len(lines) == len(CLIENT_ENV_VARS) and all(line.startswith("export ") for line in lines)
    parsed = dict(shlex.split(line)[1].split("=", 1) for line in lines)
    assert parsed == env
    shell = subprocess.run(["bash", "-c", export_lines(env) + 'printf %s/%s "$AWS_SECRET_ACCESS_KEY" '
                            '"$MLFLOW_TRACKING_PASSWORD"'], capture_output=True, text=True, check=True)
    assert shell.stdout == "s e'cret/pass$word"


def test_mlflow_login_is_generated_once_kept_private_and_its_config_reads_back(tmp_path: Path) -> None:
    login = mlflow_auth.load_or_create_login(tmp_path / "login.json")
    assert mlflow_auth.load_or_create_login(tmp_path / "login.json") == login
    assert login.username == "admin" and len(login.password) >= 12 and login.password != "password1234"
    assert login != mlflow_auth.load_or_create_login(tmp_path / "other.json")  # generated, not a default
    database = "postgresql+psycopg2://postgres@/mlflow_auth?host=/tmp/odd%dir"
    config = tmp_path / "auth.ini"
    config.write_text("stale, readable by others")
    config.chmod(0o644)
    mlflow_auth.write_config(config, database, login)
    for path in (tmp_path / "login.json", config):
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
    parser = configparser.ConfigParser()  # as mlflow.server.auth.config reads it, %-interpolation included
    parser.read(config)
    assert dict(parser["mlflow"]) == {"database_uri": database, "default_permission": "READ",
                                      "admin_username": "admin", "admin_password": login.password,
                                      "auth_cache_ttl_seconds": str(mlflow_auth.LOGIN_CACHE_SECONDS)}
    env = mlflow_auth.server_env(config, login)
    assert env == {"MLFLOW_AUTH_CONFIG_PATH": str(config), "MLFLOW_FLASK_SERVER_SECRET_KEY": login.flask_secret_key}


@pytest.fixture
def login_server() -> Iterator[str]:
    """A stand-in for MLflow's login check: 200 for admin:right-password-1, 401 for anything else."""
    expected = "Basic " + base64.b64encode(b"admin:right-password-1").decode()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200 if self.headers.get("Authorization") == expected else 401)
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    thread.join()


def test_up_checks_the_exported_mlflow_login_and_names_the_way_out(login_server: str, tmp_path: Path) -> None:
    file = tmp_path / "mlflow-login.json"
    mlflow_auth.check_login(login_server, mlflow_auth.AdminLogin("admin", "right-password-1", "k"), file)
    with pytest.raises(AdapterflowError, match="refuses the stack's admin login 'admin'.*HTTP 401") as refused:
        mlflow_auth.check_login(login_server, mlflow_auth.AdminLogin("admin", "another-password", "k"), file)
    assert str(file) in refused.value.message and "mlflow_auth" in (refused.value.hint or "")


def test_the_mlflow_server_runs_the_basic_auth_app_only_with_auth() -> None:
    with_auth = servers.mlflow_command("postgresql+psycopg2://db", "b", 5001, auth=True)
    assert with_auth[-2:] == ["--app-name", "basic-auth"]
    assert "--app-name" not in servers.mlflow_command("postgresql+psycopg2://db", "b", 5001, auth=False)


def test_pid_file_records_forgets_and_ignores_recycled_pids(tmp_path: Path) -> None:
    pids = PidFile(tmp_path / "pids.json")
    assert pids.read() == {}
    entry = pids.record("me", os.getpid())
    assert pids.read() == {"me": entry} and is_alive(entry)
    assert not is_alive(Recorded(os.getpid(), entry.started - 1000))  # same PID, another process
    pids.forget("me")
    assert not pids.path.exists() and pids.read() == {}


def test_a_finished_child_counts_as_gone_even_before_it_is_reaped(tmp_path: Path) -> None:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    entry = Recorded(child.pid, psutil.Process(child.pid).create_time())
    deadline = time.monotonic() + 10
    while is_alive(entry) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not is_alive(entry)  # a zombie until the poll below
    child.wait()


def test_stop_groups_kills_children_that_ignore_sigterm(tmp_path: Path) -> None:
    log = tmp_path / "stubborn.log"
    script = "trap '' TERM; sleep 60 & echo started; wait"
    process = spawn(["bash", "-c", script], os.environ, log)
    wait_until("stubborn", lambda: "started" in log.read_text(), process, log, timeout=10)
    pids = PidFile(tmp_path / "pids.json")
    entry = pids.record("stubborn", process.pid)
    started = time.monotonic()
    stop_groups([entry], grace=0.5)
    process.wait(timeout=5)
    assert time.monotonic() - started < 5
    assert not [proc for proc in psutil.process_iter() if _group(proc) == process.pid]  # its child is gone too


def _group(process: psutil.Process) -> int | None:
    try:
        return os.getpgid(process.pid) if process.status() != psutil.STATUS_ZOMBIE else None
    except (OSError, psutil.Error):
        return None


def test_wait_until_reports_an_exited_process_with_its_log_tail(tmp_path: Path) -> None:
    log = tmp_path / "broken.log"
    process = spawn([sys.executable, "-c", "print('bad flag -x'); raise SystemExit(3)"], os.environ, log)
    with pytest.raises(AdapterflowError) as failure:
        wait_until("broken", lambda: False, process, log, timeout=20)
    assert "exited with code 3" in failure.value.message and "bad flag -x" in failure.value.message
    assert str(log) in (failure.value.hint or "")


def test_ports_are_distinct_and_a_taken_fixed_port_is_a_user_error() -> None:
    assert len(set(free_ports(5))) == 5
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        resolved = resolve_ports({"a": 0, "b": 0})
        assert len(set(resolved.values())) == 2 and 0 not in resolved.values()
        with pytest.raises(AdapterflowError, match=f"mlflow port {port}"):
            resolve_ports({"mlflow": port, "s3": 0})


def test_credentials_are_private_generated_once_and_weed_gets_no_default_grpc_port(tmp_path: Path) -> None:
    first = objectstore.load_or_create_credentials(tmp_path / "credentials.json")
    assert objectstore.load_or_create_credentials(tmp_path / "credentials.json") == first
    objectstore.write_identity_config(tmp_path / "identities.json", first)
    for name in ("credentials.json", "identities.json"):
        assert stat.S_IMODE((tmp_path / name).stat().st_mode) == 0o600
    identity = json.loads((tmp_path / "identities.json").read_text())["identities"][0]["credentials"][0]
    assert identity == {"accessKey": first.access_key, "secretKey": first.secret_key}
    internal = dict(zip(objectstore.INTERNAL_PORTS, free_ports(len(objectstore.INTERNAL_PORTS)), strict=True))
    command = objectstore.weed_command(Path("weed"), tmp_path, tmp_path / "identities.json", 8333, internal)
    assert f"-s3.config={tmp_path / 'identities.json'}" in command and "-master.telemetry=false" in command
    assert all(any(flag.startswith(f"-{name.replace('_', '.port.')}") for flag in command)
               for name in ("master_grpc", "volume_grpc", "filer_grpc", "s3_grpc"))


def test_postgres_socket_folder_falls_back_to_a_short_path(tmp_path: Path) -> None:
    assert postgres.socket_dir(tmp_path) == tmp_path / "run"
    long_root = tmp_path / ("x" * 120)
    short = postgres.socket_dir(long_root)
    assert len(str(short / postgres.SOCKET_NAME)) <= 107 and short == postgres.socket_dir(long_root)
    assert postgres.uri(short, "prefect", "asyncpg") == f"postgresql+asyncpg://postgres@/prefect?host={short}"


def test_no_stack_means_empty_status_a_clear_error_and_a_harmless_down(tmp_path: Path) -> None:
    stack = Stack(tmp_path / "stack")
    assert stack.status() == []
    stack.down()
    stack.down()
    with pytest.raises(AdapterflowError, match="no stack under"):
        stack.client_env()


@pytest.fixture
def stand_in(tmp_path: Path) -> Iterator[subprocess.Popen[bytes]]:
    """A sleeping process in its own session that stands in for the components of a stack."""
    process = spawn(["sleep", "60"], os.environ, tmp_path / "sleep.log")
    yield process
    process.kill()
    process.wait()


def _fake_running(root: Path, names: list[str], stand_in: subprocess.Popen[bytes], **state_fields: object) -> Stack:
    """A stack whose files say it runs, with the stand-in process as each component."""
    stack = Stack(root, StackSettings(s3_port=0, mlflow_port=0, prefect_port=0, start_timeout=1))
    root.mkdir(parents=True)
    state = {"ports": {"s3": 1, "mlflow": 2, "prefect": 3}, "bucket": "b", "pools": ["cpu"], "sockets": "/x",
             **state_fields}
    stack.layout.state.write_text(json.dumps(state))
    objectstore.load_or_create_credentials(stack.layout.credentials)
    for name in names:
        stack.pids.record(name, stand_in.pid)
    return stack


def test_up_on_a_running_stack_only_returns_its_env(tmp_path: Path, stand_in: subprocess.Popen[bytes]) -> None:
    stack = _fake_running(tmp_path / "stack", ["postgres", "s3", "mlflow", "prefect", "worker-cpu"], stand_in,
                          mlflow_auth=True)
    login = mlflow_auth.load_or_create_login(stack.layout.mlflow_login)
    env = stack.up()
    assert env["MLFLOW_TRACKING_URI"] == "http://127.0.0.1:2" and env["ADAPTERFLOW_STORAGE"] == "s3://b/cache"
    assert (env["MLFLOW_TRACKING_USERNAME"], env["MLFLOW_TRACKING_PASSWORD"]) == (login.username, login.password)
    assert env == Stack(tmp_path / "stack").client_env() and stand_in.poll() is None
    stack.layout.mlflow_login.unlink()
    with pytest.raises(AdapterflowError, match="MLflow login .* is missing"):
        stack.client_env()


def test_cli_up_prints_the_mlflow_login_only_among_the_exports(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, stand_in: subprocess.Popen[bytes]
) -> None:
    monkeypatch.setenv("ADAPTERFLOW_HOME", str(tmp_path))
    stack = _fake_running(tmp_path / "stack", ["postgres", "s3", "mlflow", "prefect", "worker-cpu"], stand_in,
                          mlflow_auth=True)
    login = mlflow_auth.load_or_create_login(stack.layout.mlflow_login)
    result = CliRunner().invoke(stack_app, ["up"])
    assert result.exit_code == 0, result.output
    assert "export MLFLOW_TRACKING_USERNAME=admin\n" in result.stdout
    assert f"export MLFLOW_TRACKING_PASSWORD={login.password}\n" in result.stdout  # token_urlsafe needs no quotes
    assert "MLflow asks for a login: user admin" in result.stderr and login.password not in result.stderr


def test_a_stack_started_without_mlflow_auth_exports_no_login(tmp_path: Path) -> None:
    root = tmp_path / "stack"
    root.mkdir()
    state = {"ports": {"s3": 1, "mlflow": 2, "prefect": 3}, "bucket": "b", "pools": [], "sockets": "/x"}
    (root / "stack.json").write_text(json.dumps(state))  # as written before MLflow had a login
    objectstore.load_or_create_credentials(root / "credentials.json")
    assert not set(MLFLOW_LOGIN_VARS) & set(Stack(root).client_env())


def test_up_refuses_a_partly_running_stack(tmp_path: Path, stand_in: subprocess.Popen[bytes]) -> None:
    stack = _fake_running(tmp_path / "stack", ["postgres", "s3"], stand_in)
    with pytest.raises(AdapterflowError, match="part of a stack is running") as failure:
        stack.up()
    assert "adapterflow stack down" in (failure.value.hint or "") and stand_in.poll() is None


def test_cli_exit_codes_without_servers(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ADAPTERFLOW_HOME", str(tmp_path))
    runner = CliRunner()
    bad_pool = runner.invoke(stack_app, ["up", "--pool", "cuda:many"])
    assert bad_pool.exit_code == 2 and "NAME:LIMIT" in bad_pool.output
    assert runner.invoke(stack_app, ["up", "--mlflow-port", "70000"]).exit_code == 2
    missing = runner.invoke(stack_app, ["status"])
    assert missing.exit_code == 1 and "no stack under" in missing.output
    assert runner.invoke(stack_app, ["down"]).exit_code == 0


@pytest.mark.servers
def test_every_component_of_the_running_stack(cluster: dict, tmp_path: Path) -> None:
    """Postgres, S3 with a real identity, MLflow proxying artifacts into the bucket behind its basic-auth app,
    Prefect, two workers. The `cluster` fixture starts the stack once per session and, when stopping it, asserts
    that no PID is left."""
    import boto3
    import httpx
    import psycopg2
    from botocore.exceptions import ClientError
    from mlflow.tracking import MlflowClient

    env, root = cluster["env"], cluster["stack_root"]
    assert tuple(env) == CLIENT_ENV_VARS
    sockets = json.loads((root / "stack.json").read_text())["sockets"]
    connection = psycopg2.connect(host=sockets, dbname="postgres", user="postgres")
    with connection, connection.cursor() as cursor:
        cursor.execute("SELECT datname FROM pg_database")
        assert {"mlflow", "mlflow_auth", "prefect"} <= {row[0] for row in cursor.fetchall()}
    connection.close()

    def s3(secret: str):
        return boto3.client("s3", endpoint_url=env["AWS_ENDPOINT_URL"], region_name="us-east-1",
                            aws_access_key_id=env["AWS_ACCESS_KEY_ID"], aws_secret_access_key=secret)

    with pytest.raises(ClientError):
        s3("not-the-secret").list_buckets()
    bucket = s3(env["AWS_SECRET_ACCESS_KEY"])
    assert "adapterflow" in [entry["Name"] for entry in bucket.list_buckets()["Buckets"]]

    for secret in ("mlflow-login.json", "mlflow-auth.ini"):
        assert stat.S_IMODE((root / secret).stat().st_mode) == 0o600
    assert env["MLFLOW_TRACKING_PASSWORD"] in (root / "mlflow-auth.ini").read_text()
    client = MlflowClient(tracking_uri=env["MLFLOW_TRACKING_URI"])  # the tracking URI and the login in the env
    run = client.create_run(client.create_experiment("stack-check"))
    artifact = tmp_path / "note.txt"
    artifact.write_text("hello bucket")
    client.log_artifact(run.info.run_id, str(artifact))
    keys = [item["Key"] for item in bucket.list_objects_v2(Bucket="adapterflow", Prefix="mlartifacts/")
            .get("Contents", [])]
    assert any(key.endswith(f"{run.info.run_id}/artifacts/note.txt") for key in keys), keys

    assert httpx.get(f"{env['PREFECT_API_URL']}/health", timeout=5).json() is True
    workers = PidFile(root / "pids.json").read()
    for pool in ("cpu", "cuda"):
        assert servers.online_workers(env["PREFECT_API_URL"], pool) == 1
        worker_env = psutil.Process(workers[f"worker-{pool}"].pid).environ()
        assert {name: worker_env.get(name) for name in MLFLOW_LOGIN_VARS} == {
            name: env[name] for name in MLFLOW_LOGIN_VARS}
    cuda = httpx.get(f"{env['PREFECT_API_URL']}/work_pools/cuda", timeout=5).json()
    assert cuda["type"] == "process" and cuda["concurrency_limit"] == 1

    statuses = Stack(root).status()  # from the files, as another process would
    assert [status.name for status in statuses] == ["postgres", "s3", "mlflow", "prefect", "worker-cpu",
                                                    "worker-cuda"]
    assert all(status.alive and status.healthy for status in statuses), statuses
    assert set(PidFile(root / "pids.json").read()) == {status.name for status in statuses}
