"""MLflow names and the thin layer every stage uses to log into the pipeline's one run.

Stages log through the client with an explicit run id: tasks may run in other threads or on other
machines, where MLflow's thread-local "active run" does not exist. Every param, tag, text, table and
artifact passes the tracker's Redactor (adapterflow/tracking/redaction.py) on its way. Metrics that meet an MLflow
outage wait in the run's metric buffer (adapterflow/tracking/metric_buffer.py) instead of failing the stage; they
reach a server in one short try (adapterflow/tracking/metric_sender.py), so an outage does not stall training.
"""

from __future__ import annotations

import logging
import os
import subprocess
import tempfile
import time
import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import mlflow
import pandas as pd
from mlflow.data.dataset_source_registry import resolve_dataset_source
from mlflow.data.meta_dataset import MetaDataset
from mlflow.entities import DatasetInput, InputTag, Metric, Param, RunTag
from mlflow.tracking import MlflowClient
from mlflow.utils.validation import MAX_PARAM_VAL_LENGTH, MAX_TAG_VAL_LENGTH, _validate_metric

import adapterflow
from adapterflow.core.errors import AdapterflowError
from adapterflow.core.faults import classify_failure
from adapterflow.core.home import Home, uses_embedded_mlflow
from adapterflow.tracking.metric_buffer import (
    FLUSH_DEADLINE_S,
    MetricBuffer,
    backoff_delay,
    metric_buffer_path,
    outage_start,
)
from adapterflow.tracking.metric_sender import send_metric_batch
from adapterflow.tracking.redaction import Redactor

if TYPE_CHECKING:
    from matplotlib.figure import Figure

    from adapterflow.storage.records import RunContext
    from schemas.data import PiiConfig

TAG_BASE_MODEL = "adapterflow.base_model"
TAG_BASE_MODEL_SHA = "adapterflow.base_model_sha256"
TAG_DATASET_FINGERPRINT = "adapterflow.dataset_fingerprint"
TAG_CONFIG_SHA = "adapterflow.config_sha256"
TAG_METHOD = "adapterflow.method"
TAG_CODE_VERSION = "adapterflow.code_version"
TAG_FLOW_RUN = "prefect.flow_run_id"
TAG_RUN_NAME = "adapterflow.run_name"
TAG_RUN_KIND = "adapterflow.kind"  # finetune | data-check
TAG_WARM_START = "adapterflow.warm_start_from"  # models:/NAME/VERSION a warm-started training continued
TAG_STOPPED_EARLY = "adapterflow.stopped_early"  # why training ended before epochs or max_steps, and at which step
TAG_FAILURE = "adapterflow.failure"  # why a failed run failed (the error's message, redacted)
TAG_CHECKPOINT = "adapterflow.checkpoint"  # the newest complete training checkpoint: the run can be resumed
TAG_RESUMED = "adapterflow.resumed"  # how many times an interrupted run was resumed
TAG_TOKENIZER_SHA = "adapterflow.tokenizer_sha256"  # tokenizer + chat template (tokenization.tokenizer_fingerprint)
TAG_ADAPTER_SHA = "adapterflow.adapter_sha256"  # a version's trained content (methods.artifacts.adapter_identity)
TAG_MLFLOW_RUN = "adapterflow.mlflow_run_id"
TAG_TRAIN_ROWS = "adapterflow.train_rows"
TAG_EVAL_ROWS = "adapterflow.eval_rows"
TAG_PROMOTION = "adapterflow.promotion"  # the gate's decision in one line
TAG_PROMOTION_REASONS = "adapterflow.promotion.reasons"  # every check, one per line
PER_EXAMPLE_ARTIFACT = "eval/per_example.json"  # {model: {value: [one per eval example]}}: numbers only
METRIC_VALIDATION_SUCCESS = "data/validation_success"  # 1.0 when the data passed its expectations
CONFIG_ARTIFACT_DIR, CONFIG_FILE = "config", "config.yaml"  # every run's resolved config (tasks/track.py::open_run)
CONFIG_ARTIFACT = f"{CONFIG_ARTIFACT_DIR}/{CONFIG_FILE}"

EXPERIMENT_KIND_TAG = "mlflow.experimentKind"  # decides the UI's view of an experiment
EXPERIMENT_KIND = "custom_model_development"  # the model-training view (runs, metrics, charts), not the GenAI one
SYSTEM_METRICS_INTERVAL_S = 5.0  # seconds between system metric samples during training

ALIAS_CHALLENGER = "challenger"
ALIAS_CHAMPION = "champion"
ALIAS_PREVIOUS_CHAMPION = "previous-champion"

METRIC_BATCH = 900  # MLflow accepts at most 1000 entities per log_batch call


def eval_metric(model: str, metric: str) -> str:
    """`eval/<model>/<metric>`, model one of base, candidate, champion."""
    return f"eval/{model}/{metric}"


def code_version() -> str:
    """The package version plus the git commit it runs from, when there is one."""
    here = Path(__file__).resolve().parent
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "--short=12", "HEAD"], cwd=here, capture_output=True, text=True, timeout=5, check=True
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        commit = ""
    return f"{adapterflow.__version__}+{commit}" if commit else adapterflow.__version__


def flatten_params(config: Mapping[str, Any], prefix: str = "") -> dict[str, str]:
    """Dotted keys, values as strings truncated to MLflow's limit (long values crash some loggers)."""
    flat: dict[str, str] = {}
    for key, value in config.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping) and value:
            flat.update(flatten_params(value, f"{name}."))
        else:
            flat[name] = str(value)[:MAX_PARAM_VAL_LENGTH]
    return flat


def ensure_experiment(client: MlflowClient, name: str, home: Home) -> str:
    """The experiment's id, creating it with artifacts under ADAPTERFLOW_HOME on the embedded store, tagged to
    open in MLflow's model-training view (an experiment made before that tag existed gets it too)."""
    experiment = client.get_experiment_by_name(name)
    if experiment is not None:
        if EXPERIMENT_KIND_TAG not in experiment.tags:
            client.set_experiment_tag(experiment.experiment_id, EXPERIMENT_KIND_TAG, EXPERIMENT_KIND)
        return experiment.experiment_id
    location = None
    if uses_embedded_mlflow(home):
        location = (home.mlflow_artifacts / name).as_uri()
    return client.create_experiment(name, artifact_location=location, tags={EXPERIMENT_KIND_TAG: EXPERIMENT_KIND})


@contextmanager
def system_metrics(run_id: str, interval_s: float = SYSTEM_METRICS_INTERVAL_S) -> Iterator[None]:
    """Log CPU, memory, disk, network and (with pynvml and a GPU) GPU use as `system/...` metrics of the run while
    the block runs; steps continue after an earlier monitored block (a retried or resumed training). Monitoring is
    an extra: when MLflow can't be reached to start it, the block runs unmonitored."""
    from mlflow.system_metrics.system_metrics_monitor import SystemMetricsMonitor

    try:
        monitor = SystemMetricsMonitor(run_id, sampling_interval=interval_s, resume_logging=True,
                                       tracking_uri=tracking_uri())
    except Exception as error:  # noqa: BLE001 - whatever stops the monitor must not stop training
        _tracking_logger().warning("system metrics are not logged for this block: %s", classify_failure(error).reason)
        yield
        return
    monitor.start()
    try:
        yield
    finally:
        monitor.finish()


class RunTracker:
    """Logs into one existing MLflow run by id; secrets, and personal data when `pii` is given, are redacted
    from everything but metrics before it is logged (keys are our own names and stay as they are)."""

    def __init__(self, run_id: str, client: MlflowClient | None = None, pii: PiiConfig | None = None,
                 metric_buffer: MetricBuffer | None = None, resumed: bool = False) -> None:
        self.run_id = run_id
        self.client = client or MlflowClient()
        self.redactor = Redactor(pii)
        self.metric_buffer = metric_buffer or MetricBuffer(metric_buffer_path(Home.from_env(), run_id))
        self.resumed = resumed
        self._logged_through: dict[str, int] = {}

    @classmethod
    def for_run(cls, run: RunContext, client: MlflowClient | None = None) -> RunTracker:
        """A tracker that redacts personal data the way the run's `data.pii` settings redact training rows."""
        return cls(run.mlflow_run_id, client, run.pii)

    def log_metrics(self, metrics: Mapping[str, float], step: int = 0) -> None:
        """Log metrics at `step`. While MLflow is unreachable they wait in the metric buffer, with this step and
        time, and go out first at the next call that reaches it; other failures raise."""
        timestamp = mlflow.utils.time.get_current_time_millis()
        entities = [Metric(key, float(value), timestamp, step) for key, value in metrics.items() if value is not None]
        for metric in entities:  # a bad metric fails here, not after it waited out an outage in the buffer
            _validate_metric(metric.key, metric.value, metric.timestamp, metric.step)
        if self.resumed:  # steps a resumed training recomputes were logged by the interrupted attempt: once each
            entities = [metric for metric in entities if metric.step > self.last_logged_step(metric.key)]
        self._send_metrics(entities)

    def last_logged_step(self, key: str) -> int:
        """The last step of `key` in the run (-1 when none), read once per key; -1 when MLflow can't say (an
        outage): then the step is logged again rather than lost."""
        if key not in self._logged_through:
            try:
                history = self.client.get_metric_history(self.run_id, key)
            except Exception as error:
                if not classify_failure(error).transient:
                    raise
                return -1
            self._logged_through[key] = max((metric.step for metric in history), default=-1)
        return self._logged_through[key]

    def flush_metrics(self, deadline_s: float = FLUSH_DEADLINE_S, sleep: Callable[[float], None] = time.sleep) -> None:
        """Deliver the buffered metrics, retrying with backoff for up to `deadline_s`; then fail saying where
        they are kept."""
        started = time.monotonic()
        attempt = 0
        while (error := self._send_metrics([])) is not None:
            delay = backoff_delay(attempt)
            if time.monotonic() - started + delay > deadline_s:
                waiting = len(self.metric_buffer.read())
                server = self.redactor.text(self.client.tracking_uri)
                raise AdapterflowError(
                    f"MLflow at {server} is still unreachable after {deadline_s:.0f} s "
                    f"({classify_failure(error).reason}): {waiting} metrics of run {self.run_id} were not delivered "
                    f"and are kept in {self.metric_buffer.path}",
                    hint="once the server answers, deliver them (with the same ADAPTERFLOW_HOME): python -c "
                         f"\"from adapterflow.tracking.run import RunTracker; RunTracker('{self.run_id}').flush_metrics()\"",
                ) from error
            sleep(delay)
            attempt += 1

    def _send_metrics(self, new: Sequence[Metric]) -> BaseException | None:
        """Send the buffered metrics, then `new`, in order. A transient failure buffers what did not go and is
        returned; any other failure raises, and only what waited before stays buffered."""
        buffered = self.metric_buffer.read()
        pending = [*buffered, *new]
        sent = 0
        try:
            for start in range(0, len(pending), METRIC_BATCH):
                send_metric_batch(self.client, self.run_id, pending[start : start + METRIC_BATCH])
                sent = min(start + METRIC_BATCH, len(pending))
        except Exception as error:
            verdict = classify_failure(error)
            if not verdict.transient:
                if sent:
                    self.metric_buffer.replace(buffered[sent:])
                raise
            if sent:
                self.metric_buffer.replace(pending[sent:])
            else:
                self.metric_buffer.append(new)
            if not buffered:  # the first failure of this outage: one warning, not one per training step
                _tracking_logger().warning(
                    "MLflow unreachable since %s (%s), buffering %d metrics in %s until it answers",
                    outage_start(pending[sent:]), verdict.reason, len(pending) - sent, self.metric_buffer.path)
            return error
        if buffered:
            self.metric_buffer.replace([])
            _tracking_logger().info("MLflow answers again: delivered %d buffered metrics logged since %s",
                                    len(buffered), outage_start(buffered))
        return None

    def log_params(self, params: Mapping[str, str]) -> None:
        # redacted before cut to MLflow's limit: a cut would leave half a secret that no longer matches
        entities = [Param(key, self.redactor.text(str(value))[:MAX_PARAM_VAL_LENGTH]) for key, value in params.items()]
        for start in range(0, len(entities), 100):  # MLflow caps params per batch at 100
            self.client.log_batch(self.run_id, params=entities[start : start + 100], synchronous=True)

    def set_tags(self, tags: Mapping[str, str]) -> None:
        self.client.log_batch(self.run_id, tags=[RunTag(key, self.redactor.text(str(value))[:MAX_TAG_VAL_LENGTH])
                                                 for key, value in tags.items()])

    def log_artifact(self, path: str | Path, artifact_path: str | None = None) -> None:
        """Log a redacted copy of a file or folder (the run folder keeps the original)."""
        path = Path(path)
        with tempfile.TemporaryDirectory(prefix="adapterflow-redacted-") as staging:
            if path.is_dir():
                self.redactor.tree(path, Path(staging))
                self.client.log_artifacts(self.run_id, staging, artifact_path)
            else:
                copy = Path(staging) / path.name
                self.redactor.file(path, copy)
                self.client.log_artifact(self.run_id, str(copy), artifact_path)

    def log_dict(self, data: Any, artifact_file: str) -> None:
        self.client.log_dict(self.run_id, self.redactor.value(data), artifact_file)

    def log_text(self, text: str, artifact_file: str) -> None:
        self.client.log_text(self.run_id, self.redactor.text(text), artifact_file)

    def log_table(self, frame: pd.DataFrame, artifact_file: str) -> None:
        self.client.log_table(self.run_id, data=self.redactor.frame(frame), artifact_file=artifact_file)

    def log_figure(self, figure: Figure, artifact_file: str) -> None:
        """Log a matplotlib figure as an image, its texts (titles, axis labels, legends, annotations) redacted first;
        tick labels come from the plotted data when it is drawn: keep user text out of them."""
        from matplotlib.text import Text

        for text in figure.findobj(Text):
            text.set_text(self.redactor.text(text.get_text()))
        self.client.log_figure(self.run_id, figure, artifact_file)

    def log_dataset(self, uri: str, name: str, context: str, digest: str) -> None:
        """Record a dataset as a run input (the UI's Datasets column) by reference: no rows are loaded."""
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # "can be interpreted in multiple ways": the local reading is meant
            source = resolve_dataset_source(self.redactor.text(uri))
        dataset = MetaDataset(source, name=self.redactor.text(name), digest=digest[:36])
        entity = DatasetInput(dataset._to_mlflow_entity(), tags=[InputTag("mlflow.data.context", context)])
        self.client.log_inputs(self.run_id, datasets=[entity])


def _tracking_logger() -> logging.Logger | logging.LoggerAdapter:
    # imported when needed: Prefect takes seconds to import in every torchrun worker that logs metrics
    from adapterflow.core.logs import stage_logger

    return stage_logger()


def download_artifacts(uri: str) -> Path:
    """Fetch a model's or run's artifacts into a fresh temporary folder."""
    target = Path(tempfile.mkdtemp(prefix="adapterflow-"))
    return Path(mlflow.artifacts.download_artifacts(artifact_uri=uri, dst_path=str(target)))


def tracking_uri() -> str:
    return os.environ.get("MLFLOW_TRACKING_URI") or mlflow.get_tracking_uri()
