"""`@stage`: a pipeline stage as a Prefect task that is timed and retried only on transient failures."""

from __future__ import annotations

import functools
import time
from collections.abc import Callable
from typing import Any, TypeVar

from prefect import Task, task
from prefect.cache_policies import NO_CACHE
from prefect.client.schemas.objects import TaskRun
from prefect.states import State
from prefect.tasks import exponential_backoff

from adapterflow.core.faults import classify_failure
from adapterflow.core.logs import stage_logger
from adapterflow.storage.records import StageRecord

RecordT = TypeVar("RecordT", bound=StageRecord)


def is_transient(task: Task, task_run: TaskRun, state: State) -> bool:
    """Retry network and service failures only (see adapterflow.core.faults); say why a failure is not retried."""
    try:
        state.result(raise_on_failure=True)
    except Exception as error:  # noqa: BLE001 - classified below
        verdict = classify_failure(error)
        stage_logger().warning("%s failed, %s: %s", task.name, "retrying" if verdict.transient else "not retrying",
                               verdict.reason)
        return verdict.transient
    return False


def stage(name: str, retries: int = 0, retry_delay_seconds: float = 10, **task_options: Any) -> Callable:
    """Decorate a stage function: it runs as a Prefect task and its record carries the elapsed seconds."""

    def decorate(fn: Callable[..., RecordT]) -> Task:
        @functools.wraps(fn)
        def timed(*args: Any, **kwargs: Any) -> RecordT:
            started = time.perf_counter()
            record = fn(*args, **kwargs)
            record.seconds = round(time.perf_counter() - started, 3)
            stage_logger().info("%s done in %.1f s%s", name, record.seconds, " (from cache)" if record.skipped else "")
            return record

        # Stages cache by content themselves (see CONVENTIONS); Prefect's input hashing would only add cost.
        return task(
            name=name,
            cache_policy=NO_CACHE,
            retries=retries,
            # delay, 2x delay, 4x delay, ..., each spread by up to +-50% so that runs hit by one outage
            # don't all come back at the same second
            retry_delay_seconds=exponential_backoff(backoff_factor=retry_delay_seconds)(retries) if retries else 0,
            retry_jitter_factor=0.5 if retries else None,
            retry_condition_fn=is_transient if retries else None,
            **task_options,
        )(timed)

    return decorate
