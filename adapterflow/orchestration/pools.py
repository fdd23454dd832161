"""Prefect process work pools, created the way `prefect work-pool create NAME --type process` would."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:  # importing prefect fixes its settings: the CLI imports this before it configures PREFECT_HOME
    from prefect.client.orchestration import SyncPrefectClient


def ensure_work_pool(client: SyncPrefectClient, name: str, concurrency_limit: int | None) -> None:
    """Create a process pool with Prefect's default job template; an existing pool keeps its settings except a
    concurrency limit given here."""
    from prefect.client.schemas.actions import WorkPoolCreate, WorkPoolUpdate
    from prefect.exceptions import ObjectAlreadyExists, ObjectNotFound
    from prefect.workers.process import ProcessWorker

    try:
        client.read_work_pool(name)
    except ObjectNotFound:
        try:
            client.create_work_pool(WorkPoolCreate(name=name, type="process", concurrency_limit=concurrency_limit,
                                                   base_job_template=ProcessWorker.get_default_base_job_template()))
            return
        except ObjectAlreadyExists:  # created meanwhile by another deploy
            pass
    if concurrency_limit is not None:
        client.update_work_pool(name, WorkPoolUpdate(concurrency_limit=concurrency_limit))
