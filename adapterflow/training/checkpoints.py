"""Training checkpoints that survive a crash, kept in the run's store under `checkpoints/<adapter key>/`.

The Trainer writes each `checkpoint-<step>` folder: the trained weights, optimizer, scheduler, gradient scaler,
RNG states and its state (global step, from which it finds the data position again). A checkpoint counts only
once adapterflow's marker is in it, written after every other file is on disk (and, with an S3 store, uploaded):
a crash mid-write leaves a folder that resume ignores and removes. The newest `keep` complete checkpoints stay.

The folder is named by the adapter's cache key, so a Prefect retry of the train stage and a new run of the
same config (same data, settings, code) find it; checkpoints of a finished training are deleted. In a torchrun
launch every process writes its part into the same folder and the main process marks it once all have, then
uploads it in the background (DurableCheckpoints says why).
"""

from __future__ import annotations

import json
import shutil
import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from transformers import TrainerCallback

from adapterflow.core.logs import stage_logger
from adapterflow.storage.durable import mark_complete
from adapterflow.storage.store import Storage
from adapterflow.tracking.run import TAG_CHECKPOINT, RunTracker

MARKER = "adapterflow-complete.json"
HISTORY = "adapterflow-history.json"  # the training curve up to the checkpoint, for the stored adapter's history
FOLDER_PREFIX = "checkpoint-"  # the Trainer's folder names


@dataclass(frozen=True)
class CheckpointPlan:
    """Where and how often one training saves checkpoints."""

    storage: Storage
    key: str
    every_steps: int
    keep: int

    @property
    def local_root(self) -> Path:
        """The Trainer's output folder on this machine (for a local store: the store itself)."""
        return self.storage.local_dir("checkpoints", self.key)

    def folder_key(self, step: int) -> str:
        return f"{self.key}/{FOLDER_PREFIX}{step}"


def checkpoint_step(name: str) -> int | None:
    """The step of a `checkpoint-<step>` folder name, None for any other name."""
    suffix = name.removeprefix(FOLDER_PREFIX)
    return int(suffix) if name.startswith(FOLDER_PREFIX) and suffix.isdigit() else None


def local_checkpoints(root: Path) -> dict[int, Path]:
    """Every `checkpoint-<step>` folder under `root`, complete or not, by step."""
    if not root.is_dir():
        return {}
    return {step: path for path in root.iterdir() if (step := checkpoint_step(path.name)) is not None}


def complete_steps(plan: CheckpointPlan) -> list[int]:
    """The steps of the complete checkpoints, here or in the store, oldest first."""
    steps = {step for step, path in local_checkpoints(plan.local_root).items() if (path / MARKER).is_file()}
    for key in plan.storage.remote_keys("checkpoints", plan.key):
        step = checkpoint_step(key.rsplit("/", 1)[-1])
        if step is not None and step not in steps and plan.storage.has("checkpoints", key, MARKER):
            steps.add(step)
    return sorted(steps)


def newest_checkpoint(plan: CheckpointPlan) -> Path | None:
    """A local copy of the newest complete checkpoint (downloaded from the store when only it has one), after
    removing the incomplete folders a crash left here; None when there is none."""
    for path in local_checkpoints(plan.local_root).values():
        if not (path / MARKER).is_file():
            shutil.rmtree(path, ignore_errors=True)
    steps = complete_steps(plan)
    if not steps:
        return None
    return plan.storage.lookup("checkpoints", plan.folder_key(steps[-1]), MARKER)


def prune(plan: CheckpointPlan) -> None:
    """Keep the newest `plan.keep` complete checkpoints; the older ones go (marker first)."""
    for step in complete_steps(plan)[: -plan.keep]:
        plan.storage.remove("checkpoints", plan.folder_key(step), MARKER)


def discard_checkpoints(plan: CheckpointPlan) -> None:
    """Delete every checkpoint of a training that finished: its adapter is stored, they are no longer needed."""
    for step in complete_steps(plan):
        plan.storage.remove("checkpoints", plan.folder_key(step), MARKER)
    shutil.rmtree(plan.local_root, ignore_errors=True)


def read_history(folder: Path) -> list[dict[str, float]]:
    """The training curve saved with a checkpoint."""
    path = folder / HISTORY
    return json.loads(path.read_text()) if path.is_file() else []


class DurableCheckpoints(TrainerCallback):
    """After the Trainer saved a checkpoint: add the curve so far and mark it complete; then, in the background,
    copy it to a remote store, drop the old ones, and tag the run with it (a run with that tag can be resumed).

    Rank 0 uploads in a thread while every rank trains on. Done in place, behind the barrier that waits for every
    rank's part, the upload held the other ranks at their next collective, and a full fine-tune's checkpoint can
    take longer to upload than ddp_timeout (30 minutes) lets them wait. A timeout set from the measured upload time
    was the other way out, but the first upload has no measurement, a store's bandwidth varies, and a long timeout
    also delays noticing a rank that really hangs. One upload is in flight at a time: the next save waits for it
    first (so the other ranks wait only for an upload that outlasts the training between two saves by more than
    ddp_timeout), and so does the end of training (`finish`, after the last collective); its error is raised there.
    """

    def __init__(self, plan: CheckpointPlan, tracker: RunTracker | None, history: list[dict[str, float]]) -> None:
        self.plan = plan
        self.tracker = tracker
        self.history = history
        self.uploads = ThreadPoolExecutor(max_workers=1, thread_name_prefix="checkpoint-upload")
        self.upload: Future[None] | None = None

    def on_save(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            torch.distributed.barrier()  # every process has written its part (its RNG state, optimizer shard)
        if not state.is_world_process_zero:
            return
        self.wait_for_upload()  # before this checkpoint counts: pruning keeps the newest one that is in the store
        folder = self.plan.local_root / f"{FOLDER_PREFIX}{state.global_step}"
        (folder / HISTORY).write_text(json.dumps([entry for entry in self.history if entry["step"] <= state.global_step]))
        mark_complete(folder, MARKER, json.dumps({"step": state.global_step, "time": time.time()}).encode())
        self.upload = self.uploads.submit(self.publish, folder, state.global_step)

    def publish(self, folder: Path, step: int) -> None:
        """Copy a complete checkpoint to the store, drop the old ones and tag the run with it (the upload thread)."""
        self.plan.storage.upload(folder, "checkpoints", self.plan.folder_key(step), MARKER)
        prune(self.plan)
        if self.tracker is not None:
            self.tracker.set_tags({TAG_CHECKPOINT: self.plan.storage.uri("checkpoints", self.plan.folder_key(step))})

    def wait_for_upload(self) -> None:
        """Wait for the upload in flight, if any; its error is raised here, in the training's thread."""
        upload, self.upload = self.upload, None
        if upload is not None:
            upload.result()

    def finish(self) -> None:
        """Wait for the last upload once training ended (raising its error) and stop the upload thread."""
        try:
            self.wait_for_upload()
        finally:
            self.uploads.shutdown()

    def finish_after_failure(self) -> None:
        """Wait for the last upload of a training that failed, so that it overlaps neither a retry nor the clean-up;
        the training's error is the one to raise, an upload's error is only logged."""
        try:
            self.finish()
        except Exception as error:
            stage_logger().warning("uploading the last checkpoint failed too: %s", error)
