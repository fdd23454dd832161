"""`adapterflow schedule`: a cron schedule served from one process, with the Prefect server it starts for the
scheduler; a scheduled run completes, and stopping `schedule` stops that server too."""

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

# Slow suite: stopping `schedule` while a scheduled run is in flight hung in Prefect's graceful shutdown once in three
# runs here (it needs a second signal then), so this is not in `make test` until that is handled.
pytestmark = [pytest.mark.servers, pytest.mark.slow]


def test_a_cron_schedule_fires_and_stopping_schedule_stops_its_server(tmp_path: Path, tiny_model_dir: Path) -> None:
    config = tiny_config(tiny_model_dir, execution={"device": "cpu"})
    config["name"] = "tiny-scheduled-here"
    path = write_config(tmp_path, config)
    tracking = f"sqlite:///{tmp_path / 'mlflow.db'}"
    env = {**os.environ, "ADAPTERFLOW_HOME": str(tmp_path / "home"), "MLFLOW_TRACKING_URI": tracking,
           "PREFECT_SERVER_SERVICES_SCHEDULER_LOOP_SECONDS": "2"}
    env.pop("PREFECT_API_URL", None)
    env.pop("PREFECT_HOME", None)
    log = (tmp_path / "schedule.log").open("wb")
    scheduler = subprocess.Popen([sys.executable, "-m", "adapterflow.cli.main", "schedule", str(path), "--cron", "* * * * *"],
                             env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        client = MlflowClient(tracking)
        deadline = time.monotonic() + 180  # the server's start, the next minute, then the run
        finished = []
        while not finished:
            assert scheduler.poll() is None, (tmp_path / "schedule.log").read_text()[-3000:]
            assert time.monotonic() < deadline, (tmp_path / "schedule.log").read_text()[-3000:]
            time.sleep(2)
            experiment = client.get_experiment_by_name("tiny-scheduled-here") if (tmp_path / "mlflow.db").exists() else None
            if experiment is not None:
                finished = client.search_runs([experiment.experiment_id], "attributes.status = 'FINISHED'")
        assert finished[0].data.tags["adapterflow.kind"] == "finetune"
        children = psutil.Process(scheduler.pid).children(recursive=True)
        assert any("server" in " ".join(child.cmdline()) for child in children)  # the Prefect server it started
        scheduler.send_signal(signal.SIGTERM)
        scheduler.wait(timeout=60)
        psutil.wait_procs(children, timeout=15)
        assert not [child.pid for child in children if child.is_running() and child.status() != psutil.STATUS_ZOMBIE]
    finally:
        if scheduler.poll() is None:  # its Prefect server runs in a session of its own: stop it by PID too
            for child in psutil.Process(scheduler.pid).children(recursive=True):
                child.kill()
            os.killpg(scheduler.pid, signal.SIGKILL)
        log.close()
