"""One process of a distributed training launch: `python -m adapterflow.training.distributed_worker SPEC`.

torchrun starts one per rank (see adapterflow.training.distributed, which writes SPEC). Every rank trains;
rank 0 alone logs to the MLflow run, saves the artifact and writes the outcome for the launcher. A rank that
fails writes its exception to `<output_dir>/errors/rank-<rank>.json` for the launcher to quote.
"""

from __future__ import annotations

import json
import logging
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch.distributed.elastic.multiprocessing.errors import record

from adapterflow.training.launch_files import write_error_report, write_outcome

if TYPE_CHECKING:
    from adapterflow.training.trainer import TrainingOutcome

# For tests only: the rank named here raises before training, to exercise how a launch reports a failed rank.
TEST_FAIL_RANK = "ADAPTERFLOW_TEST_FAIL_RANK"


def rank_device(device_type: str) -> torch.device:
    """Each rank trains on its own GPU (LOCAL_RANK); on CPU all ranks share the cores."""
    if device_type != "cuda":
        return torch.device(device_type)
    device = torch.device("cuda", int(os.environ["LOCAL_RANK"]))
    torch.cuda.set_device(device)
    return device


def train_rank(spec: dict[str, Any], rank: int) -> TrainingOutcome:
    if os.environ.get(TEST_FAIL_RANK) == str(rank):
        raise RuntimeError(f"failure injected into rank {rank} by {TEST_FAIL_RANK}")
    # transformers, peft and mlflow take seconds to import in every process: a bad launch fails before that
    from pydantic import TypeAdapter

    from adapterflow.core.home import Home
    from adapterflow.storage.records import BaseModelRef
    from adapterflow.storage.store import Storage
    from adapterflow.tracking.run import RunTracker
    from adapterflow.training.checkpoints import CheckpointPlan
    from adapterflow.training.trainer import train_adapter
    from schemas.method import Method
    from schemas.training import TrainingConfig

    run_id = spec["mlflow_run_id"]
    resume_from = Path(spec["resume_from"]) if spec["resume_from"] else None
    checkpoints = None
    if spec["checkpoints"]:
        settings = spec["checkpoints"]
        checkpoints = CheckpointPlan(Storage.resolve(settings["root"], Home.from_env()), settings["key"],
                                     settings["every_steps"], settings["keep"])
    # rank 0 logs; after a resume, not the steps the interrupted launch logged already
    tracker = RunTracker(run_id, resumed=resume_from is not None) if rank == 0 and run_id else None
    return train_adapter(
        Path(spec["tokenized_dir"]), BaseModelRef(**spec["base"]), TypeAdapter(Method).validate_python(spec["method"]),
        TrainingConfig.model_validate(spec["config"]), rank_device(spec["device"]), spec["precision"],
        Path(spec["output_dir"]), tracker,
        chat_template=spec["chat_template"], max_length=spec["max_length"], task=spec["task"],
        label_names=spec["label_names"], base_dtype=spec["base_dtype"], init_from=spec["init_from"],
        checkpoints=checkpoints, resume_from=resume_from,
    )


@record  # torchrun's own failure summary then carries the traceback too
def main(spec_path: str) -> None:
    rank = int(os.environ["RANK"])
    # No Prefect run context here: the adapterflow logger (rank 0's progress lines) writes to torchrun.log.
    logging.basicConfig(level=logging.INFO, format=f"%(asctime)s rank {rank} %(levelname)s %(message)s")
    spec = json.loads(Path(spec_path).read_text())
    output_dir = Path(spec["output_dir"])
    try:
        outcome = train_rank(spec, rank)
    except Exception as error:
        write_error_report(output_dir, rank, error)
        raise
    if rank == 0:
        write_outcome(outcome, output_dir)
    if torch.distributed.is_initialized():
        torch.distributed.destroy_process_group()


if __name__ == "__main__":
    main(sys.argv[1])
