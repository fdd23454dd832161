"""Metrics that could not reach MLflow: kept, in order, in a small JSONL file until the server answers again.

One file per MLflow run, `runs/unsent-metrics/<run id>.jsonl` under ADAPTERFLOW_HOME, found from the run id
alone: the training callback, the torchrun worker and finish_tracking each build their own RunTracker. Each line
is one metric with its original step and timestamp, so the curves drawn after an outage are the ones training
saw, and a metric sent twice (a timeout after the server stored it) is the same point, which MLflow's SQL store
keeps once. The stages of a run log one after another: the file has one writer at a time.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from mlflow.entities import Metric

from adapterflow.core.home import Home

BUFFER_FOLDER = "unsent-metrics"
FLUSH_DEADLINE_S = 300.0  # how long finishing a run waits for MLflow to come back before it fails
MAX_BACKOFF_S = 30.0


def metric_buffer_path(home: Home, run_id: str) -> Path:
    """Where the metrics of MLflow run `run_id` wait while the server is unreachable."""
    return home.runs / BUFFER_FOLDER / f"{run_id}.jsonl"


def backoff_delay(attempt: int) -> float:
    """Seconds to wait before retry number `attempt` (0, 1, ...): 1, 2, 4, ... at most MAX_BACKOFF_S."""
    return min(2.0**attempt, MAX_BACKOFF_S)


def outage_start(metrics: Sequence[Metric]) -> str:
    """When the first metric that did not get through was logged, in UTC."""
    return datetime.fromtimestamp(metrics[0].timestamp / 1000, timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")


@dataclass(frozen=True)
class MetricBuffer:
    """The JSONL file of one run's undelivered metrics, oldest first; absent when nothing waits."""

    path: Path

    def read(self) -> list[Metric]:
        if not self.path.exists():
            return []
        return [Metric(**json.loads(line)) for line in self.path.read_text().splitlines() if line]

    def append(self, metrics: Sequence[Metric]) -> None:
        """Add metrics at the end, on disk before returning: a crash right after keeps them."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self.path.open("a") as file:
            file.write(_lines(metrics))
            file.flush()
            os.fsync(file.fileno())

    def replace(self, metrics: Sequence[Metric]) -> None:
        """Keep exactly `metrics` (none: remove the file), swapped in whole so a crash leaves old or new."""
        if not metrics:
            self.path.unlink(missing_ok=True)
            return
        staging = self.path.with_suffix(".jsonl.tmp")
        staging.write_text(_lines(metrics))
        os.replace(staging, self.path)


def _lines(metrics: Sequence[Metric]) -> str:
    return "".join(
        json.dumps({"key": m.key, "value": m.value, "timestamp": m.timestamp, "step": m.step}) + "\n" for m in metrics
    )
