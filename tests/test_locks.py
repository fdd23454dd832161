"""The retrain slot on the embedded Prefect API: a slot left taken by a killed run is freed, one held by a live
process is waited for."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from prefect.client.orchestration import get_client
from prefect.client.schemas.actions import GlobalConcurrencyLimitUpdate

from adapterflow.core.errors import AdapterflowError
from adapterflow.core.home import Home
from adapterflow.orchestration import locks

pytestmark = pytest.mark.usefixtures("prefect_server")


def take_slot_for(home: Home, model: str, pid: int) -> Path:
    """The state a run leaves when killed while holding the slot: one active slot, its PID beside it."""
    name = locks.retrain_limit_name(model)
    locks.ensure_limit(name)
    with get_client(sync_client=True) as client:
        client.update_global_concurrency_limit(name, GlobalConcurrencyLimitUpdate(active_slots=1))
    holder = home.root / "locks" / f"{name}.json"
    holder.parent.mkdir(parents=True, exist_ok=True)
    holder.write_text(json.dumps({"pid": pid}))
    return holder


def active_slots(model: str) -> int:
    with get_client(sync_client=True) as client:
        return client.read_global_concurrency_limit_by_name(locks.retrain_limit_name(model)).active_slots


@pytest.fixture(autouse=True)
def embedded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(locks, "uses_embedded_prefect", lambda: True)  # the test server stands in for it


def test_a_slot_whose_holder_was_killed_is_freed_and_taken(home: Home) -> None:
    finished = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    holder = take_slot_for(home, "killed-model", int(finished.stdout))
    with locks.one_retrain_at_a_time("killed-model", timeout_s=5):
        assert active_slots("killed-model") == 1
        assert json.loads(holder.read_text())["pid"] != int(finished.stdout)  # ours now
    assert active_slots("killed-model") == 0 and not holder.exists()


def test_a_slot_held_by_a_live_process_is_waited_for(home: Home) -> None:
    alive = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        take_slot_for(home, "busy-model", alive.pid)
        with pytest.raises(AdapterflowError, match="held its retrain slot for over 2 s"):
            with locks.one_retrain_at_a_time("busy-model", timeout_s=2):
                pass
        assert active_slots("busy-model") == 1
    finally:
        alive.kill()
        alive.wait()
