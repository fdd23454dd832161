"""`adapterflow serve`: a cron schedule served from one process, with the Prefect server it starts for the
scheduler; a scheduled run completes, and stopping `serve` stops that server too."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest
from mlflow.tracking import MlflowClient

from tests.conftest import tiny_config, write_config

# Slow suite: stopping `serve` while a scheduled run is in flight hung in Prefect's graceful shutdown once in three
# runs here (it needs a second signal then), so this is not in `make test` until that is handled.
pytestmark = [pytest.mark.servers, pytest.mark.slow]


def test_a_served_cron_schedule_fires_and_stopping_serve_stops_its_server(tmp_path: Path, tiny_model_dir: Path) -> None:
    config = tiny_config(tiny_model_dir, execution={"device": "cpu"})
    config["name"] = "tiny-served"
    path = write_config(tmp_path, config)
    tracking = f"sqlite:///{tmp_path / 'mlflow.db'}"
    env = {**os.environ, "ADAPTERFLOW_HOME": str(tmp_path / "home"), "MLFLOW_TRACKING_URI": tracking,
           "PREFECT_SERVER_SERVICES_SCHEDULER_LOOP_SECONDS": "2"}
    env.pop("PREFECT_API_URL", None)
    env.pop("PREFECT_HOME", None)
    log = (tmp_path / "serve.log").open("wb")
    serve = subprocess.Popen([sys.executable, "-m", "adapterflow.cli.main", "serve", str(path), "--cron", "* * * * *"],
                             env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        client = MlflowClient(tracking)
        deadline = time.monotonic() + 180  # the server's start, the next minute, then the run
        finished = []
        while not finished:
            assert serve.poll() is None, (tmp_path / "serve.log").read_text()[-3000:]
            assert time.monotonic() < deadline, (tmp_path / "serve.log").read_text()[-3000:]
            time.sleep(2)
            experiment = client.get_experiment_by_name("tiny-served") if (tmp_path / "mlflow.db").exists() else None
            if experiment is not None:
                finished = client.search_runs([experiment.experiment_id], "attributes.status = 'FINISHED'")
        assert finished[0].data.tags["adapterflow.kind"] == "finetune"
        children = psutil.Process(serve.pid).children(recursive=True)
        assert any("server" in " ".join(child.cmdline()) for child in children)  # the Prefect server it started
        serve.send_signal(signal.SIGTERM)
        serve.wait(timeout=60)
        psutil.wait_procs(children, timeout=15)
        assert not [child.pid for child in children if child.is_running() and child.status() != psutil.STATUS_ZOMBIE]
    finally:
        if serve.poll() is None:  # its Prefect server runs in a session of its own: stop it by PID too
            for child in psutil.Process(serve.pid).children(recursive=True):
                child.kill()
            os.killpg(serve.pid, signal.SIGKILL)
        log.close()
