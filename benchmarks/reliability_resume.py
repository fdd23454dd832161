"""Section 5 of the reliability benchmark: kill -9 of the training process at seeded steps, each time re-running
the same config, against one uninterrupted run of that config (CPU, fixed seeds, embedded MLflow stores)."""

from __future__ import annotations

import hashlib
import random
import time
from pathlib import Path

from benchmarks.reliability_processes import (
    flow_env,
    kill_group,
    poll,
    start_flow,
    tiny_config,
    wait_flow,
    write_config,
)

KILLS = 5
FLOW_TIMEOUT_S = 900


def kill_steps(max_steps: int, seed: int) -> list[int]:
    """KILLS distinct steps in 1..max_steps-1, ascending: each re-run resumes before the next kill."""
    return sorted(random.Random(seed).sample(range(1, max_steps), KILLS))


def checkpoint_done(home: Path, step: int) -> bool:
    """The run's checkpoint for `step` is complete (its marker written last) in the home's local store."""
    return any((home / "cache" / "checkpoints").glob(f"*/checkpoint-{step}/adapterflow-complete.json"))


def adapter_digest(home: Path) -> str:
    """sha256 over the sha256s of every .safetensors file in the home's MLflow artifacts (the adapter weights)."""
    digests = sorted(hashlib.sha256(path.read_bytes()).hexdigest()
                     for path in (home / "mlartifacts").rglob("*.safetensors"))
    return hashlib.sha256("".join(digests).encode()).hexdigest() if digests else "none"


def store_counts(home: Path, name: str) -> tuple[int, int, list[int]]:
    """MLflow runs of the experiment, model versions of the registered model, and the logged train/loss steps."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient(f"sqlite:///{home / 'mlflow.db'}")
    experiment = client.get_experiment_by_name(name)
    runs = client.search_runs([experiment.experiment_id]) if experiment else []
    versions = client.search_model_versions(f"name = '{name}'")
    steps = [m.step for run in runs for m in client.get_metric_history(run.info.run_id, "train/loss")]
    return len(runs), len(versions), steps


def resume_runs(folder: Path, model: Path, max_steps: int, seed: int) -> dict:
    """One uninterrupted run; then the same config started, killed with -9 when each seeded step's checkpoint is
    complete, and started again, KILLS times, the last start left to finish."""
    name = "reliability-resume"
    config = write_config(folder / "resume.yaml", tiny_config(
        model, name, training={"max_steps": max_steps, "checkpoint_steps": 1, "seed": seed}))
    baseline_home, resumed_home = folder / "resume-baseline-home", folder / "resume-killed-home"
    started = time.perf_counter()
    baseline_exit = wait_flow(start_flow(config, flow_env(baseline_home, None), folder / "resume-baseline.log"),
                              FLOW_TIMEOUT_S)
    baseline_s = time.perf_counter() - started
    kills = []
    for attempt, step in enumerate(kill_steps(max_steps, seed)):
        flow = start_flow(config, flow_env(resumed_home, None), folder / f"resume-{attempt}.log")
        reached = poll(lambda step=step: checkpoint_done(resumed_home, step), flow, FLOW_TIMEOUT_S, every=0.2)
        kill_group(flow)
        kills.append((step, reached))
    final_exit = wait_flow(start_flow(config, flow_env(resumed_home, None), folder / "resume-final.log"),
                           FLOW_TIMEOUT_S)
    return {"name": name, "baseline_exit": baseline_exit, "baseline_s": baseline_s, "final_exit": final_exit,
            "kills": kills, "baseline": store_counts(baseline_home, name), "resumed": store_counts(resumed_home, name),
            "baseline_digest": adapter_digest(baseline_home), "resumed_digest": adapter_digest(resumed_home),
            "seconds": time.perf_counter() - started}
