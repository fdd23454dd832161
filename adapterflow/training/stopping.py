"""When training stops, decided from the validation curve and the clock: pure rules, and the state a checkpoint
carries so that a resumed training goes on with them."""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass
from pathlib import Path

VALIDATION_SHARE = 0.08  # eval_steps auto: one validation measurement per this share of training time
TIMED_STEPS = 3  # steps timed (after the first, which pays for warm-up) before eval_steps auto and the budget plan
STATE_FILE = "adapterflow-stopping.json"
BEST_WEIGHTS_FILE = "adapterflow-best.safetensors"


@dataclass
class StoppingState:
    """Where the validation curve and the budget stand; saved with each checkpoint."""

    eval_steps: int | None = None
    best_step: int | None = None
    best_loss: float | None = None
    measurements_without_improvement: int = 0
    measurements: int = 0
    validation_seconds: float = 0.0
    planned_steps: int | None = None
    seconds_per_step: float | None = None
    elapsed_seconds: float = 0.0  # of the training loop, in earlier processes too
    stopped_early: str | None = None  # why training ended before its upper bound (epochs or max_steps)

    def save(self, folder: Path) -> None:
        (folder / STATE_FILE).write_text(json.dumps(asdict(self)))

    @classmethod
    def load(cls, folder: Path | None) -> StoppingState:
        path = folder / STATE_FILE if folder is not None else None
        return cls(**json.loads(path.read_text())) if path is not None and path.is_file() else cls()


def auto_eval_steps(validation_seconds: float, seconds_per_step: float, share: float = VALIDATION_SHARE) -> int:
    """Steps between validation measurements so that they cost about `share` of the training time."""
    return max(1, math.ceil(validation_seconds / (share * max(seconds_per_step, 1e-9))))


def improves(loss: float, best: float | None, min_delta: float) -> bool:
    """Whether `loss` beats the best so far by more than `min_delta` (a non-finite loss never does)."""
    return math.isfinite(loss) and (best is None or loss < best - min_delta)


def seconds_per_planned_step(seconds_per_step: float, validation_seconds: float, eval_steps: int) -> float:
    """A step's measured cost with its share of validation."""
    return seconds_per_step + validation_seconds / eval_steps


def planned_steps(
    budget_seconds: float, elapsed_seconds: float, step: int, seconds_per_step: float, validation_seconds: float,
    eval_steps: int, upper_bound: int,
) -> int:
    """The last step that ends within the budget: the time left, less one final validation, at the measured cost
    of a step and its share of validation; at least the next step, at most the upper bound."""
    per_step = seconds_per_planned_step(seconds_per_step, validation_seconds, eval_steps)
    left = budget_seconds - elapsed_seconds - validation_seconds
    return max(step + 1, min(upper_bound, step + math.floor(left / per_step)))


def stop_reason_for_patience(state: StoppingState, patience: int) -> str | None:
    """Early stopping's reason once `patience` measurements in a row did not improve."""
    if state.measurements_without_improvement < patience:
        return None
    return (f"early stopping: val/loss did not improve for {patience} measurements "
            f"(best {state.best_loss:.4f} at step {state.best_step})")


def describe_plan(budget_seconds: float, state: StoppingState, upper_bound: int, validation_seconds: float) -> str:
    """The budget plan, for the log: the measured speed, the planned steps and the training time they take."""
    per_step = seconds_per_planned_step(state.seconds_per_step, validation_seconds, state.eval_steps)
    return (f"time budget {budget_seconds:.0f}s: {state.seconds_per_step:.2f}s per step measured, one validation "
            f"({validation_seconds:.1f}s) every {state.eval_steps} steps; {state.planned_steps} of at most "
            f"{upper_bound} steps planned, about {state.planned_steps * per_step:.0f}s of training")
