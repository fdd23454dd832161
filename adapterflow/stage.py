"""`@stage`: a pipeline stage as a Prefect task that is timed and retried only on transient failures."""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import Callable
from typing import Any, TypeVar

from prefect import Task, get_run_logger, task
from prefect.exceptions import MissingContextError
from prefect.cache_policies import NO_CACHE
from prefect.client.schemas.objects import TaskRun
from prefect.states import State

from adapterflow.errors import AdapterflowError
from adapterflow.records import StageRecord

RecordT = TypeVar("RecordT", bound=StageRecord)


def stage_logger() -> logging.Logger | logging.LoggerAdapter:
    """Prefect's run logger inside a flow or task run (its lines reach the Prefect UI), a plain logger outside."""
    try:
        return get_run_logger()
    except MissingContextError:
        return logging.getLogger("adapterflow")


def is_transient(task: Task, task_run: TaskRun, state: State) -> bool:
    """Retry I/O and service hiccups; a problem in the user's config or data won't fix itself."""
    try:
        state.result(raise_on_failure=True)
    except AdapterflowError:
        return False
    except Exception:  # noqa: BLE001 - anything else may be transient (network, locked files, OOM-killed worker)
        return True
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
            retry_delay_seconds=retry_delay_seconds,
            retry_condition_fn=is_transient if retries else None,
            **task_options,
        )(timed)

    return decorate
