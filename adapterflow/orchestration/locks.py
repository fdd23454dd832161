"""One retrain per registered model at a time: a Prefect global concurrency limit keyed by the model name.

The limit lives on the Prefect server (or the embedded API's database), so it holds across processes and
machines. The slot is leased: on a Prefect server, its repossessor service frees the lease of a run that crashed.
The embedded API runs no lease service, and every run using it is on this machine: there the holder's PID is
kept beside the slot, and the next run frees a slot whose holder no longer exists (a run killed outright), so
re-running the config after a crash resumes at once. A taken slot whose holder lives is waited for
(execution.retrain_lock_timeout_s), then the error says how to free it.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

from prefect.client.orchestration import get_client
from prefect.client.schemas.actions import GlobalConcurrencyLimitCreate, GlobalConcurrencyLimitUpdate
from prefect.concurrency.sync import concurrency
from prefect.exceptions import ObjectAlreadyExists, ObjectNotFound

from adapterflow.core.errors import AdapterflowError
from adapterflow.core.home import Home

logger = logging.getLogger(__name__)


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
    holder = Home.from_env().root / "locks" / f"{name}.json" if uses_embedded_prefect() else None
    with ExitStack() as held:
        if holder is not None:
            free_if_holder_died(name, holder)
        try:
            held.enter_context(concurrency(name, occupy=1, timeout_seconds=timeout_s, strict=True))
        except TimeoutError:
            raise AdapterflowError(
                f"another run of {model_name!r} held its retrain slot for over {timeout_s:.0f} s",
                hint=f"let it finish, or raise execution.retrain_lock_timeout_s; if no run of it is active (one was "
                     f"killed), free the slot: prefect global-concurrency-limit update {name} --active-slots 0",
            ) from None
        if holder is not None:
            holder.write_text(json.dumps({"pid": os.getpid()}))
            held.callback(holder.unlink, missing_ok=True)
        yield


def uses_embedded_prefect() -> bool:
    """Whether flows run on Prefect's ephemeral API (no server configured: in the environment or a profile)."""
    from prefect.settings import get_current_settings

    return get_current_settings().api.url is None


def process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True


def free_if_holder_died(name: str, holder: Path) -> None:
    """Embedded API: free the slot when the process that took it (its PID beside the slot) no longer exists.

    Checked and freed under a file lock, so two runs starting at once can't both free it.
    """
    holder.parent.mkdir(parents=True, exist_ok=True)
    with (holder.parent / ".check.lock").open("w") as guard:
        fcntl.flock(guard, fcntl.LOCK_EX)
        if not holder.is_file():
            return
        try:
            pid = int(json.loads(holder.read_text())["pid"])
        except (ValueError, KeyError, TypeError):
            pid = 0
        if pid and process_alive(pid):
            return
        with get_client(sync_client=True) as client:
            client.update_global_concurrency_limit(name, GlobalConcurrencyLimitUpdate(active_slots=0))
        holder.unlink(missing_ok=True)
        logger.warning("freed the retrain slot %s: process %s that held it no longer exists (killed?)", name, pid)
