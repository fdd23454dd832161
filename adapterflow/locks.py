"""One retrain per registered model at a time: a Prefect global concurrency limit keyed by the model name.

The limit lives on the Prefect server (or the embedded API's database), so it holds across processes and
machines. The slot is leased: on a Prefect server, its repossessor service frees the lease of a run that crashed.
The embedded API runs no lease service, so there a run killed outright leaves the slot taken; the next run waits
execution.retrain_lock_timeout_s and then says how to free it.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import ExitStack, contextmanager

from prefect.client.orchestration import get_client
from prefect.client.schemas.actions import GlobalConcurrencyLimitCreate
from prefect.concurrency.sync import concurrency
from prefect.exceptions import ObjectAlreadyExists, ObjectNotFound

from adapterflow.errors import AdapterflowError


def retrain_limit_name(model_name: str) -> str:
    return f"adapterflow-retrain-{model_name}"


def ensure_limit(name: str, limit: int = 1) -> None:
    """Create the global concurrency limit unless it exists (its current setting is kept)."""
    with get_client(sync_client=True) as client:
        try:
            client.read_global_concurrency_limit_by_name(name)
        except ObjectNotFound:
            try:
                client.create_global_concurrency_limit(GlobalConcurrencyLimitCreate(name=name, limit=limit))
            except ObjectAlreadyExists:  # another run created it meanwhile
                pass


@contextmanager
def one_retrain_at_a_time(model_name: str, timeout_s: float | None) -> Iterator[None]:
    """Hold the model's retrain slot; wait while another run of the same model holds it."""
    name = retrain_limit_name(model_name)
    ensure_limit(name)
    with ExitStack() as held:
        try:
            held.enter_context(concurrency(name, occupy=1, timeout_seconds=timeout_s, strict=True))
        except TimeoutError:
            raise AdapterflowError(
                f"another run of {model_name!r} held its retrain slot for over {timeout_s:.0f} s",
                hint=f"let it finish, or raise execution.retrain_lock_timeout_s; if no run of it is active (one was "
                     f"killed), free the slot: prefect global-concurrency-limit update {name} --active-slots 0",
            ) from None
        yield
