"""A local shared-server stack: Postgres, an S3 store, MLflow and Prefect servers, and one worker per pool."""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass
from functools import partial
from pathlib import Path

from adapterflow.core.errors import AdapterflowError
from adapterflow.orchestration.pools import ensure_work_pool
from adapterflow.stack import mlflow_auth, objectstore, postgres, servers
from adapterflow.stack.environment import client_env, s3_env
from adapterflow.stack.ports import resolve_ports
from adapterflow.stack.processes import PidFile, is_alive, spawn, stop_groups, wait_until
from adapterflow.stack.settings import StackLayout, StackSettings

DATABASES = ("mlflow", "prefect")


@dataclass(frozen=True)
class ComponentStatus:
    name: str
    pid: int | None
    alive: bool
    healthy: bool
    url: str


@dataclass(frozen=True)
class StackState:
    """What `up` resolved (`stack.json`): enough for `status`, `down` and `client_env` from another process."""

    ports: dict[str, int]
    bucket: str
    pools: list[str]
    sockets: str
    mlflow_auth: bool = False  # a stack.json written before MLflow had a login says nothing

    @property
    def components(self) -> list[str]:
        return ["postgres", "s3", "mlflow", "prefect", *(f"worker-{pool}" for pool in self.pools)]


class Stack:
    """Start, stop and inspect the stack kept under `root`."""

    def __init__(self, root: Path, settings: StackSettings | None = None) -> None:
        self.layout = StackLayout(root.expanduser().resolve())
        self.settings = settings or StackSettings()
        self.pids = PidFile(self.layout.pids)
        self._children: dict[str, subprocess.Popen[bytes]] = {}

    def up(self) -> dict[str, str]:
        """Start every component, wait until all are healthy and return the client environment.

        A stack already running under the root is left as it is. On any failure, what was started is stopped.
        """
        running = {name for name, entry in self.pids.read().items() if is_alive(entry)}
        state = self._state()
        if running and state is not None and running == set(state.components):
            return self.client_env()
        if running:
            raise AdapterflowError(f"part of a stack is running under {self.layout.root}: {', '.join(sorted(running))}",
                                   hint="stop it with `adapterflow stack down`, then start again")
        self.down()  # what a crashed run left behind: stale PIDs, weed's sockets
        try:
            self._start()
        except BaseException:
            self.down()
            raise
        return self.client_env()

    def down(self) -> None:
        """Stop every recorded process: workers, then the servers and the S3 store, then Postgres."""
        entries = self.pids.read()
        stages = [
            [name for name in entries if name.startswith("worker-")],
            [name for name in entries if not name.startswith("worker-") and name != "postgres"],
            [name for name in entries if name == "postgres"],
        ]
        for stage in stages:
            if "postgres" in stage and is_alive(entries["postgres"]):
                postgres.stop(self.layout.pgdata, postgres.server_user(), self.layout.log("postgres"))
            stop_groups([entries[name] for name in stage])
            for name in stage:
                child = self._children.pop(name, None)
                if child is not None:
                    child.poll()  # reap our own child so it does not linger as a zombie
                self.pids.forget(name)
        state = self._state()
        if state is not None:
            objectstore.remove_sockets(state.ports)

    def status(self) -> list[ComponentStatus]:
        """Each component's PID, whether it runs and whether it answers its health check."""
        state = self._state()
        if state is None:
            return []
        entries = self.pids.read()
        rows = []
        for name, (url, healthy) in self._checks(state).items():
            entry = entries.get(name)
            alive = entry is not None and is_alive(entry)
            rows.append(ComponentStatus(name, entry.pid if entry else None, alive, alive and healthy(), url))
        return rows

    def client_env(self) -> dict[str, str]:
        """The environment clients export, read from the files under the root."""
        state = self._state()
        if state is None or not self.layout.credentials.exists():
            raise AdapterflowError(f"no stack under {self.layout.root}", hint="start one with `adapterflow stack up`")
        credentials = objectstore.load_or_create_credentials(self.layout.credentials)
        login = None
        if state.mlflow_auth:
            if not self.layout.mlflow_login.exists():
                raise AdapterflowError(f"the MLflow login of the stack under {self.layout.root} is missing: "
                                       f"{self.layout.mlflow_login}", hint="restore the file from a backup")
            admin = mlflow_auth.load_or_create_login(self.layout.mlflow_login)
            login = (admin.username, admin.password)
        return client_env(
            mlflow_url=servers.mlflow_url(state.ports["mlflow"]), mlflow_login=login,
            prefect_api_url=servers.prefect_api_url(state.ports["prefect"]),
            s3_endpoint=objectstore.endpoint(state.ports["s3"]), access_key=credentials.access_key,
            secret_key=credentials.secret_key, bucket=state.bucket,
        )

    def _start(self) -> None:
        layout, settings = self.layout, self.settings
        layout.root.mkdir(parents=True, exist_ok=True)
        public = {"s3": settings.s3_port, "mlflow": settings.mlflow_port, "prefect": settings.prefect_port}
        ports = resolve_ports({**public, **{name: 0 for name in objectstore.INTERNAL_PORTS}})
        sockets = postgres.socket_dir(layout.root)
        state = StackState(ports, settings.bucket, list(settings.pools), str(sockets), settings.mlflow_auth)
        layout.state.write_text(json.dumps(asdict(state), indent=2))
        credentials = objectstore.load_or_create_credentials(layout.credentials)
        objectstore.write_identity_config(layout.s3_config, credentials)
        s3_endpoint = objectstore.endpoint(ports["s3"])
        timeout = settings.start_timeout

        # The two stores start side by side; the servers' schema migrations then run side by side.
        layout.s3_data.mkdir(parents=True, exist_ok=True)
        internal = {name: ports[name] for name in objectstore.INTERNAL_PORTS}
        weed = self._spawn("s3", objectstore.weed_command(servers.executable("weed"), layout.s3_data,
                                                          layout.s3_config, ports["s3"], internal), os.environ)
        user = postgres.server_user()
        postgres.prepare(layout.pgdata, sockets, user, layout.log("postgres"))
        database = self._spawn("postgres", postgres.server_command(layout.pgdata, sockets), os.environ, user=user)
        wait_until("postgres", lambda: postgres.is_ready(sockets), database, layout.log("postgres"), timeout)
        postgres.create_databases(sockets, DATABASES + ((mlflow_auth.DATABASE,) if settings.mlflow_auth else ()))

        mlflow = self._spawn_mlflow(ports["mlflow"], sockets, s3_env(s3_endpoint, credentials.access_key,
                                                                     credentials.secret_key))
        prefect_api = servers.prefect_api_url(ports["prefect"])
        layout.prefect_home.mkdir(parents=True, exist_ok=True)
        prefect = self._spawn("prefect", servers.prefect_server_command(ports["prefect"]), {
            **os.environ, "PREFECT_HOME": str(layout.prefect_home), "PREFECT_API_URL": prefect_api,
            "PREFECT_SERVER_DATABASE_CONNECTION_URL": postgres.uri(sockets, "prefect", "asyncpg"),
            "PREFECT_SERVER_ANALYTICS_ENABLED": "false", **settings.server_env,
        })

        s3 = objectstore.client(s3_endpoint, credentials)
        wait_until("s3", lambda: objectstore.is_ready(s3), weed, layout.log("s3"), timeout)
        objectstore.ensure_bucket(s3, settings.bucket)
        wait_until("prefect", lambda: servers.prefect_healthy(ports["prefect"]), prefect, layout.log("prefect"),
                   timeout)
        workers = {pool: self._start_worker(pool, prefect_api) for pool in settings.pools}
        wait_until("mlflow", lambda: servers.mlflow_healthy(ports["mlflow"]), mlflow, layout.log("mlflow"), timeout)
        if settings.mlflow_auth:
            mlflow_auth.check_login(servers.mlflow_url(ports["mlflow"]),
                                    mlflow_auth.load_or_create_login(layout.mlflow_login), layout.mlflow_login)
        for pool, worker in workers.items():
            wait_until(f"worker-{pool}", partial(servers.worker_online, prefect_api, pool), worker,
                       layout.log(f"worker-{pool}"), timeout)

    def _spawn_mlflow(self, port: int, sockets: Path, store_env: dict[str, str]) -> subprocess.Popen[bytes]:
        """The tracking server on Postgres, artifacts in the bucket; with auth, MLflow's basic-auth app in front."""
        layout, settings = self.layout, self.settings
        env = {**os.environ, **store_env, "MLFLOW_DISABLE_TELEMETRY": "true", **settings.server_env}
        if settings.mlflow_auth:
            for name in mlflow_auth.OVERRIDES:
                env.pop(name, None)
            login = mlflow_auth.load_or_create_login(layout.mlflow_login)
            mlflow_auth.write_config(layout.mlflow_auth_config,
                                     postgres.uri(sockets, mlflow_auth.DATABASE, "psycopg2"), login)
            env.update(mlflow_auth.server_env(layout.mlflow_auth_config, login))
        command = servers.mlflow_command(postgres.uri(sockets, "mlflow", "psycopg2"), settings.bucket, port,
                                         auth=settings.mlflow_auth)
        return self._spawn("mlflow", command, env)

    def _start_worker(self, pool: str, prefect_api: str) -> subprocess.Popen[bytes]:
        from prefect.client.orchestration import SyncPrefectClient

        settings = self.settings.pools[pool]
        with SyncPrefectClient(prefect_api) as client:
            ensure_work_pool(client, pool, settings.concurrency_limit)
        folder = self.layout.worker_root(pool)
        home = settings.home or folder / "home"
        home.mkdir(parents=True, exist_ok=True)
        env = {
            **os.environ,  # also HF_HUB_OFFLINE, CUDA_VISIBLE_DEVICES, ... of the caller
            **self.client_env(),
            "ADAPTERFLOW_HOME": str(home),
            "PREFECT_HOME": str(folder / "prefect"),
            "PREFECT_WORKER_QUERY_SECONDS": f"{self.settings.worker_query_seconds:g}",
            **settings.env,
        }
        return self._spawn(f"worker-{pool}", servers.worker_command(pool), env)

    def _spawn(self, name: str, argv: list[str], env: Mapping[str, str],
               user: str | None = None) -> subprocess.Popen[bytes]:
        process = spawn(argv, env, self.layout.log(name), cwd=self.layout.root, user=user)
        self._children[name] = process
        self.pids.record(name, process.pid)
        return process

    def _checks(self, state: StackState) -> dict[str, tuple[str, Callable[[], bool]]]:
        """Each component's address and health check."""
        ports, sockets = state.ports, Path(state.sockets)
        prefect_api = servers.prefect_api_url(ports["prefect"])
        checks: dict[str, tuple[str, Callable[[], bool]]] = {
            "postgres": (f"postgresql://{postgres.SUPERUSER}@/?host={sockets}", lambda: postgres.is_ready(sockets)),
            "s3": (objectstore.endpoint(ports["s3"]), lambda: self._s3_ready(ports["s3"])),
            "mlflow": (servers.mlflow_url(ports["mlflow"]), lambda: servers.mlflow_healthy(ports["mlflow"])),
            "prefect": (prefect_api, lambda: servers.prefect_healthy(ports["prefect"])),
        }
        for pool in state.pools:
            checks[f"worker-{pool}"] = (f"work pool {pool}", partial(servers.worker_online, prefect_api, pool))
        return checks

    def _s3_ready(self, port: int) -> bool:
        if not self.layout.credentials.exists():
            return False
        credentials = objectstore.load_or_create_credentials(self.layout.credentials)
        return objectstore.is_ready(objectstore.client(objectstore.endpoint(port), credentials))

    def _state(self) -> StackState | None:
        if not self.layout.state.exists():
            return None
        return StackState(**json.loads(self.layout.state.read_text()))
