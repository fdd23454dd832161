"""An MLflow outage during training: metrics wait in the run's buffer file and arrive later, once each, as logged."""

from __future__ import annotations

import json
import logging
import os
import signal
import socket
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import mlflow
import pytest
import torch
from mlflow.entities import RunStatus
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from adapterflow.core.errors import AdapterflowError
from adapterflow.core.home import Home
from adapterflow.storage.records import RunContext
from adapterflow.tokenization.collate import TokenCounter
from adapterflow.tracking.metric_buffer import metric_buffer_path
from adapterflow.tracking.metric_sender import METRIC_TIMEOUT_S
from adapterflow.tracking.run import RunTracker
from adapterflow.training.callbacks import ThroughputMetrics
from benchmarks.reliability_processes import MlflowServer, mlflow_server
from tasks.track import close_run

STEPS = range(1, 11)


class FlakyServer:
    """Stands in for the MLflow server behind `log_batch`: the first `failures` calls raise ConnectionError.

    With `store_first` the server stores the batch and only its answer is lost (a timeout after the write)."""

    def __init__(self, real: Callable[..., Any], failures: int, store_first: bool = False) -> None:
        self.real = real
        self.failures = failures
        self.store_first = store_first
        self.calls = 0

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        self.calls += 1
        if self.calls <= self.failures:
            if self.store_first:
                self.real(*args, **kwargs)
            raise ConnectionError("[Errno 111] Connection refused")
        return self.real(*args, **kwargs)


@pytest.fixture
def run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> RunContext:
    """A fresh MLflow run in the tests' session store (a new SQLite store costs seconds to migrate), with its
    own ADAPTERFLOW_HOME."""
    home = Home(tmp_path / "home")
    monkeypatch.setenv("ADAPTERFLOW_HOME", str(home.root))
    client = MlflowClient()
    experiment = client.get_experiment_by_name("metric-buffer")
    mlflow_run = client.create_run(experiment.experiment_id if experiment else client.create_experiment("metric-buffer"))
    return RunContext(run_name="r", run_dir=str(tmp_path), home=str(home.root), mlflow_run_id=mlflow_run.info.run_id,
                      experiment="metric-buffer", config_sha256="0" * 64, storage=str(tmp_path / "store"))


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """MLflow's millisecond clock, a second further at every reading, starting in 2020: each reading is kept."""
    readings: list[int] = []

    def tick() -> int:
        readings.append(1_577_836_800_000 + 1000 * len(readings))
        return readings[-1]

    monkeypatch.setattr(mlflow.utils.time, "get_current_time_millis", tick)
    return readings


def train_steps(tracker: RunTracker, steps: range = STEPS) -> ThroughputMetrics:
    """Fire the training callback's log event at each step, as the Trainer does (loss and learning rate)."""
    callback = ThroughputMetrics(TokenCounter(), torch.device("cpu"), tracker)
    for step in steps:
        callback.on_log(None, SimpleNamespace(global_step=step), None, logs={"loss": 2.0 / step, "learning_rate": 1e-3})
    return callback


def history(client: MlflowClient, run_id: str, key: str) -> list[tuple[int, int, float]]:
    return [(m.step, m.timestamp, m.value) for m in client.get_metric_history(run_id, key)]


def buffered_steps(path: Path) -> list[int]:
    return [json.loads(line)["step"] for line in path.read_text().splitlines()]


@pytest.mark.parametrize("failures", [4, 10])
def test_an_outage_during_training_loses_no_metric_and_keeps_their_steps_and_times(
    run: RunContext, clock: list[int], failures: int, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    client = MlflowClient()
    monkeypatch.setattr(client, "log_batch", FlakyServer(client.log_batch, failures))
    tracker = RunTracker(run.mlflow_run_id, client)
    caplog.set_level(logging.INFO, logger="adapterflow")

    train_steps(tracker)  # an outage used to raise out of the callback here and kill the training run
    path = metric_buffer_path(Home(Path(run.home)), run.mlflow_run_id)
    if failures == 10:  # still down after the last step: all 10 steps wait on disk, 4 metrics each
        assert buffered_steps(path) == [step for step in STEPS for _ in range(4)]
    close_run(run, {"done": True})  # its own tracker and client, as finish_tracking has

    assert not path.exists()
    for key in ("train/loss", "train/learning_rate", "train/tokens_per_second", "train/padding_share"):
        assert [(step, timestamp) for step, timestamp, _ in history(client, run.mlflow_run_id, key)] == [
            (step, clock[step - 1]) for step in STEPS]  # each step once, in order, stamped when it was logged
    assert [value for _, _, value in history(client, run.mlflow_run_id, "train/loss")] == [2.0 / s for s in STEPS]
    warnings = [r.getMessage() for r in caplog.records if "MLflow unreachable since 2020-01-01 00:00:00 UTC" in r.getMessage()]
    assert len(warnings) == 1 and "buffering 4 metrics" in warnings[0] and str(path) in warnings[0]
    assert client.get_run(run.mlflow_run_id).info.status == RunStatus.to_string(RunStatus.FINISHED)


def test_the_buffer_is_on_disk_during_the_outage_and_goes_first_at_the_next_call(
    run: RunContext, clock: list[int], monkeypatch: pytest.MonkeyPatch
) -> None:
    client = MlflowClient()
    monkeypatch.setattr(client, "log_batch", FlakyServer(client.log_batch, failures=3))
    tracker = RunTracker(run.mlflow_run_id, client)

    train_steps(tracker, range(1, 4))
    assert buffered_steps(tracker.metric_buffer.path) == [1] * 4 + [2] * 4 + [3] * 4  # a crash now would keep them
    assert client.get_metric_history(run.mlflow_run_id, "train/loss") == []
    train_steps(tracker, range(4, 5))  # the server answers again

    assert not tracker.metric_buffer.path.exists()
    assert history(client, run.mlflow_run_id, "train/loss") == [(s, clock[s - 1], 2.0 / s) for s in range(1, 5)]


def test_a_batch_stored_but_unanswered_is_not_logged_twice(
    run: RunContext, clock: list[int], monkeypatch: pytest.MonkeyPatch
) -> None:
    client = MlflowClient()
    monkeypatch.setattr(client, "log_batch", FlakyServer(client.log_batch, failures=3, store_first=True))
    train_steps(RunTracker(run.mlflow_run_id, client))

    assert [step for step, _, _ in history(client, run.mlflow_run_id, "train/loss")] == list(STEPS)


def test_permanent_failures_raise_and_are_not_buffered(run: RunContext, monkeypatch: pytest.MonkeyPatch) -> None:
    client = MlflowClient()
    monkeypatch.setattr(client, "log_batch", FlakyServer(client.log_batch, failures=2))
    tracker = RunTracker(run.mlflow_run_id, client)
    train_steps(tracker, range(1, 3))  # the outage: 8 metrics buffered

    with pytest.raises(MlflowException, match="Invalid value") as invalid:
        tracker.log_metrics({"train/loss?": 1.0}, step=3)  # refused before it could wait in the buffer
    assert invalid.value.error_code == "INVALID_PARAMETER_VALUE"
    client.delete_run(run.mlflow_run_id)
    with pytest.raises(MlflowException) as deleted:  # the server refuses: the run is gone
        tracker.log_metrics({"train/loss": 1.0}, step=3)
    assert deleted.value.error_code == "INVALID_PARAMETER_VALUE"
    assert buffered_steps(tracker.metric_buffer.path) == [1] * 4 + [2] * 4  # what waited stays; step 3 was not added


def test_finishing_while_mlflow_is_still_down_fails_saying_where_the_metrics_are(
    run: RunContext, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(MlflowClient, "log_batch", FlakyServer(MlflowClient.log_batch, failures=10**6))
    train_steps(RunTracker(run.mlflow_run_id), range(1, 4))
    path = metric_buffer_path(Home(Path(run.home)), run.mlflow_run_id)

    with pytest.raises(AdapterflowError) as error:
        close_run(run, {"done": True}, metrics_deadline_s=0)
    assert f"12 metrics of run {run.mlflow_run_id} were not delivered and are kept in {path}" in str(error.value)
    assert "network failure (ConnectionError)" in str(error.value) and "flush_metrics()" in str(error.value)
    assert len(buffered_steps(path)) == 12
    assert MlflowClient().get_run(run.mlflow_run_id).info.status == RunStatus.to_string(RunStatus.RUNNING)
    assert not (Path(run.run_dir) / "summary.json").exists()


def test_finishing_waits_with_backoff_for_mlflow_to_come_back(run: RunContext, monkeypatch: pytest.MonkeyPatch) -> None:
    client = MlflowClient()
    monkeypatch.setattr(client, "log_batch", FlakyServer(client.log_batch, failures=5))
    tracker = RunTracker(run.mlflow_run_id, client)
    train_steps(tracker, range(1, 3))  # 2 failures while training, 3 more while finishing
    sleeps: list[float] = []

    tracker.flush_metrics(deadline_s=60, sleep=sleeps.append)

    assert sleeps == [1.0, 2.0, 4.0]
    assert not tracker.metric_buffer.path.exists()
    assert [step for step, _, _ in history(client, run.mlflow_run_id, "train/loss")] == [1, 2]


@pytest.fixture
def server(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[MlflowServer]:
    """A real `mlflow server` on SQLite (the reliability benchmark's), stopped by its PID whatever happened, with
    its own ADAPTERFLOW_HOME for the buffer."""
    monkeypatch.setenv("ADAPTERFLOW_HOME", str(tmp_path / "home"))
    with mlflow_server(tmp_path / "mlflow") as running:
        yield running


@contextmanager
def hung(server: MlflowServer) -> Iterator[None]:
    """SIGSTOP the server's processes for the block: connections are accepted and never answered."""
    assert server.recorded is not None
    os.killpg(server.recorded.pid, signal.SIGSTOP)
    try:
        yield
    finally:
        os.killpg(server.recorded.pid, signal.SIGCONT)


def timed_steps(tracker: RunTracker, steps: range) -> list[float]:
    """Seconds each training step's log event took in the training thread."""
    seconds = []
    for step in steps:
        started = time.monotonic()
        train_steps(tracker, range(step, step + 1))
        seconds.append(time.monotonic() - started)
    return seconds


def test_a_hung_mlflow_server_costs_a_step_one_timeout_and_gets_every_metric_once_in_order_when_back(
    server: MlflowServer, clock: list[int]
) -> None:
    client = MlflowClient(server.uri)
    run_id = client.create_run(client.create_experiment("outage")).info.run_id
    tracker = RunTracker(run_id, client)
    train_steps(tracker, range(1, 3))
    with hung(server):
        # one try each: MLflow's own retries held such a call for minutes (254 s in the reliability benchmark)
        assert max(timed_steps(tracker, range(3, 5))) < METRIC_TIMEOUT_S + 2
        assert buffered_steps(tracker.metric_buffer.path) == [3] * 4 + [4] * 4
        with pytest.raises(AdapterflowError, match=f"8 metrics of run {run_id} were not delivered and are kept in "
                                                   f"{tracker.metric_buffer.path}"):
            tracker.flush_metrics(deadline_s=0)  # finishing while the server is still down fails
    train_steps(tracker, range(5, 6))  # the server answers again, and also the requests it had not answered
    tracker.flush_metrics(deadline_s=60)

    assert not tracker.metric_buffer.path.exists()
    assert history(client, run_id, "train/loss") == [(s, clock[s - 1], 2.0 / s) for s in range(1, 6)]
    client.delete_run(run_id)
    with pytest.raises(MlflowException) as deleted:  # the server refuses: raised, not buffered
        train_steps(tracker, range(6, 7))
    assert deleted.value.error_code == "INVALID_PARAMETER_VALUE" and not tracker.metric_buffer.path.exists()


def test_a_refused_connection_costs_a_step_no_wait_and_no_secret_is_logged(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv("ADAPTERFLOW_HOME", str(tmp_path / "home"))
    password = "s3cret-in-the-uri"
    caplog.set_level(logging.DEBUG)
    with socket.socket() as closed:  # bound, not listening: connections are refused, as by a stopped server
        closed.bind(("127.0.0.1", 0))
        tracker = RunTracker("0" * 32, MlflowClient(f"http://user:{password}@127.0.0.1:{closed.getsockname()[1]}"))
        seconds = timed_steps(tracker, range(1, 4))
        with pytest.raises(AdapterflowError) as error:
            tracker.flush_metrics(deadline_s=0)

    assert max(seconds) < 1  # MLflow's own retries: 7, about 4 minutes of backoff
    assert buffered_steps(tracker.metric_buffer.path) == [1] * 4 + [2] * 4 + [3] * 4
    assert str(tracker.metric_buffer.path) in str(error.value)
    warnings = [record.getMessage() for record in caplog.records if "MLflow unreachable" in record.getMessage()]
    assert len(warnings) == 1 and "buffering 4 metrics" in warnings[0]
    assert password not in caplog.text and password not in str(error.value)
