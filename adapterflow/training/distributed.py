"""Data-parallel training on several processes: torchrun starts one worker per process (GPU).

The pipeline's process writes a JSON launch spec into the output folder and runs
`python -m torch.distributed.run --standalone --nproc_per_node N -m adapterflow.training.distributed_worker SPEC`.
Every worker calls `train_adapter`; rank 0 alone logs to MLflow, saves the artifact and writes the outcome
(metrics and history) back as JSON. A worker that fails writes its exception to `errors/rank-<rank>.json`,
so a failed launch is reported as the first failing rank's own error rather than a wall of logs.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import torch

import adapterflow
from adapterflow.core.errors import AdapterflowError
from adapterflow.core.logs import stage_logger
from adapterflow.storage.records import BaseModelRef
from adapterflow.training.checkpoints import CheckpointPlan
from adapterflow.training.launch_files import ERRORS_DIR, clear_launch_files, error_reports, read_outcome
from adapterflow.training.trainer import TrainingOutcome
from schemas.method import MethodVariant
from schemas.training import TrainingConfig

SPEC_FILE = "launch.json"
LOG_FILE = "torchrun.log"
STOP_TIMEOUT_S = 60  # for torchrun to stop its workers when the launch is interrupted
LOG_TAIL_LINES = 20  # quoted when a process died without reporting an error (killed, crashed interpreter)


def train_adapter_distributed(
    tokenized_dir: Path,
    base: BaseModelRef,
    method: MethodVariant,
    config: TrainingConfig,
    device: torch.device,
    precision: str,
    output_dir: Path,
    mlflow_run_id: str | None = None,
    chat_template: str | None = None,
    max_length: int = 512,
    task: str = "sft",
    label_names: list[str] | None = None,
    base_dtype: str = "auto",
    init_from: str | None = None,
    checkpoints: CheckpointPlan | None = None,
    resume_from: Path | None = None,
) -> TrainingOutcome:
    """`train_adapter` on `config.distributed.num_processes` processes; the outcome holds no model (it lived
    in the workers). Raises AdapterflowError naming the first rank that failed and quoting its error."""
    processes = config.distributed.num_processes
    check_resources(config, method, device)
    output_dir.mkdir(parents=True, exist_ok=True)
    spec = {
        "tokenized_dir": str(tokenized_dir), "base": base.model_dump(mode="json"),
        "method": method.model_dump(mode="json"), "config": config.model_dump(mode="json"),
        "device": device.type, "precision": precision, "output_dir": str(output_dir), "mlflow_run_id": mlflow_run_id,
        "chat_template": chat_template, "max_length": max_length, "task": task, "label_names": label_names,
        "base_dtype": base_dtype, "init_from": init_from,
        "checkpoints": None if checkpoints is None else {
            "root": checkpoints.storage.root, "key": checkpoints.key, "every_steps": checkpoints.every_steps,
            "keep": checkpoints.keep,
        },
        "resume_from": str(resume_from) if resume_from else None,
    }
    spec_path = output_dir / SPEC_FILE
    spec_path.write_text(json.dumps(spec, indent=2))
    clear_launch_files(output_dir)
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(processes),
               "-m", "adapterflow.training.distributed_worker", str(spec_path)]
    log_path = output_dir / LOG_FILE
    stage_logger().info("training on %d %s processes (%s); their output goes to %s",
                        processes, device.type, config.distributed.strategy, log_path)
    returncode = run_launch(command, worker_environment(processes), log_path)
    if returncode != 0:
        raise launch_failure(output_dir, processes, returncode)
    return read_outcome(output_dir)


def check_resources(config: TrainingConfig, method: MethodVariant, device: torch.device) -> None:
    """What the launch would otherwise fail on minutes later, in every process at once."""
    settings = config.distributed
    if device.type == "cuda" and settings.num_processes > torch.cuda.device_count():
        raise AdapterflowError(
            f"training.distributed.num_processes is {settings.num_processes} but {torch.cuda.device_count()} "
            "GPUs are visible", hint="start one process per GPU, or make more GPUs visible (CUDA_VISIBLE_DEVICES)",
        )
    if device.type != "cuda" and settings.backend == "nccl":
        raise AdapterflowError("training.distributed.backend nccl needs CUDA GPUs", hint="use backend: auto or gloo")
    if settings.strategy != "fsdp":
        return
    if device.type != "cuda":  # accelerate shards only across accelerators; on CPU it would quietly run DDP
        raise AdapterflowError("training.distributed.strategy fsdp needs CUDA GPUs", hint="use strategy: ddp on CPU")
    if method.family not in ("peft", "full") or method.type == "qlora":
        raise AdapterflowError(
            f"training.distributed.strategy fsdp does not support method {method.type}",
            hint="use strategy: ddp (quantised or partly trained weights fit on every GPU)",
        )


def worker_environment(processes: int) -> dict[str, str]:
    """This process's environment, with the package importable and the CPU threads shared among the workers."""
    env = dict(os.environ)
    root = str(Path(adapterflow.__file__).resolve().parents[1])  # the folder that holds adapterflow/ and schemas/
    env["PYTHONPATH"] = os.pathsep.join(part for part in (root, env.get("PYTHONPATH")) if part)
    # torchrun would set 1 thread per process; CPU training wants the cores split among the processes
    env.setdefault("OMP_NUM_THREADS", str(max(1, (os.cpu_count() or 1) // processes)))
    return env


def run_launch(command: list[str], env: dict[str, str], log_path: Path) -> int:
    """torchrun's exit code. Interrupted, it is asked to stop its workers first: killed, it would orphan them."""
    with log_path.open("w") as log:
        launch = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT)
        try:
            return launch.wait()
        except BaseException:
            launch.terminate()  # torchrun passes SIGTERM on to the workers and waits for them
            try:
                launch.wait(timeout=STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                launch.kill()
            raise


def launch_failure(output_dir: Path, processes: int, returncode: int) -> AdapterflowError:
    """The first failing rank's own error (by time), or the end of the log when no rank could report one."""
    log_path = output_dir / LOG_FILE
    reports = error_reports(output_dir)
    if reports:
        first = min(reports, key=lambda report: report["time"])
        others = sorted(report["rank"] for report in reports if report is not first)
        also = f" (rank{'s' if len(others) > 1 else ''} {', '.join(map(str, others))} failed too)" if others else ""
        return AdapterflowError(
            f"distributed training failed in rank {first['rank']} of {processes}{also}: "
            f"{first['type']}: {first['message']}",
            hint=f"the traceback is in {output_dir / ERRORS_DIR}/rank-{first['rank']}.json, every process's output "
            f"in {log_path}",
        )
    tail = log_path.read_text(errors="replace").splitlines()[-LOG_TAIL_LINES:] if log_path.is_file() else []
    return AdapterflowError(
        f"distributed training failed (torchrun exit code {returncode}) and no rank reported an error; "
        "the end of its output:\n" + "\n".join(tail),
        hint=f"a process killed from outside (out of memory?) reports nothing; the full output is in {log_path}",
    )

