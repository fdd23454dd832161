"""Run a stage as a deployed flow on a work pool and wait for it, with Prefect's own `run_deployment`.

The child shows as a subflow of the pipeline; its failure fails the pipeline with the child's reason, and a
run that no worker of the pool picks up in time is cancelled with a message naming the pool.
"""

from __future__ import annotations

import time
from typing import Any

from prefect.client.orchestration import SyncPrefectClient, get_client
from prefect.client.schemas.objects import FlowRun, State, StateType, WorkerStatus
from prefect.deployments import run_deployment
from prefect.exceptions import ObjectNotFound
from prefect.states import Cancelled

from adapterflow.core.errors import AdapterflowError

NOT_STARTED = {StateType.SCHEDULED, StateType.PENDING}
POLL_SECONDS = 2.0


def deployment_name(flow_name: str, config_name: str) -> str:
    return f"{flow_name}/{config_name}"


def pool_has_online_worker(client: SyncPrefectClient, pool: str) -> bool:
    return any(worker.status == WorkerStatus.ONLINE for worker in client.read_workers_for_work_pool(pool))


def wait_until_final(
    client: SyncPrefectClient, child: FlowRun, pool: str, flow_name: str, pickup_timeout_s: float
) -> State:
    """The child's final state. Only time with no online worker in the pool counts towards the timeout: a run
    queued behind the pool's concurrency limit, or whose infrastructure is starting, is being served."""
    unserved_since = time.monotonic()
    while True:
        state = client.read_flow_run(child.id).state
        if state is not None and state.is_final():
            return state
        if (state is not None and state.type not in NOT_STARTED) or pool_has_online_worker(client, pool):
            unserved_since = time.monotonic()
        elif time.monotonic() - unserved_since > pickup_timeout_s:
            raise AdapterflowError(
                f"{flow_name}: no worker of work pool {pool!r} picked up flow run {child.name}; the pool had no "
                f"online worker for {pickup_timeout_s:.0f} s",
                hint=f"start one on a machine with the GPU: prefect worker start --pool {pool} "
                     "(or raise execution.pickup_timeout_s)",
            )
        time.sleep(POLL_SECONDS)


def run_on_pool(
    flow_name: str, config_name: str, pool: str, parameters: dict[str, Any], job_variables: dict[str, Any],
    pickup_timeout_s: float,
) -> FlowRun:
    """Start the flow's deployment for this config on `pool` and wait until it has finished successfully."""
    name = deployment_name(flow_name, config_name)
    try:
        child = run_deployment(name, parameters=parameters, job_variables=job_variables or None, timeout=0,
                               as_subflow=True)
    except ObjectNotFound:
        raise AdapterflowError(f"no deployment {name!r} on the Prefect server",
                               hint="run `adapterflow deploy CONFIG` once (execution.mode is distributed)") from None
    with get_client(sync_client=True) as client:
        try:
            state = wait_until_final(client, child, pool, flow_name, pickup_timeout_s)
        except BaseException:  # our own failure or Ctrl-C: the child must not go on training unattended
            client.set_flow_run_state(child.id, Cancelled(message="the pipeline run that started it stopped"),
                                      force=True)
            raise
    if state.type != StateType.COMPLETED:
        raise AdapterflowError(f"{flow_name} (flow run {child.name} on pool {pool!r}) ended {state.name}: "
                               f"{state.message or 'no reason given'}")
    return child
