"""The files a distributed launch and its ranks exchange in the output folder: each failing rank's error report,
and rank 0's outcome. One module for both sides, so the launcher and the workers can't disagree on the format."""

from __future__ import annotations

import json
import time
import traceback
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from adapterflow.training.trainer import TrainingOutcome

OUTCOME_FILE = "outcome.json"
ERRORS_DIR = "errors"


def write_error_report(output_dir: Path, rank: int, error: BaseException) -> None:
    """A failing rank's exception, for the launcher to quote."""
    folder = output_dir / ERRORS_DIR
    folder.mkdir(parents=True, exist_ok=True)
    report = {"rank": rank, "time": time.time(), "type": type(error).__name__, "message": str(error),
              "traceback": "".join(traceback.format_exception(error))}
    (folder / f"rank-{rank}.json").write_text(json.dumps(report, indent=2))


def error_reports(output_dir: Path) -> list[dict[str, Any]]:
    """Every failing rank's report."""
    return [json.loads(path.read_text()) for path in (output_dir / ERRORS_DIR).glob("rank-*.json")]


def clear_launch_files(output_dir: Path) -> None:
    """Remove a previous launch's outcome and reports, so a new launch reads only its own."""
    for stale in (output_dir / OUTCOME_FILE, *(output_dir / ERRORS_DIR).glob("rank-*.json")):
        stale.unlink(missing_ok=True)


def write_outcome(outcome: TrainingOutcome, output_dir: Path) -> None:
    """Rank 0 hands its outcome back to the launcher."""
    data: dict[str, Any] = {"output_dir": str(outcome.output_dir), "metrics": outcome.metrics,
                            "history": outcome.history, "memory": asdict(outcome.memory) if outcome.memory else None}
    (output_dir / OUTCOME_FILE).write_text(json.dumps(data, indent=2))


def read_outcome(output_dir: Path) -> TrainingOutcome:
    """The outcome rank 0 wrote; it holds no model (that lived in the workers)."""
    from adapterflow.methods.memory import MemoryEstimate
    from adapterflow.training.trainer import TrainingOutcome

    outcome = json.loads((output_dir / OUTCOME_FILE).read_text())
    memory = MemoryEstimate(**outcome["memory"]) if outcome.get("memory") else None
    return TrainingOutcome(output_dir=Path(outcome["output_dir"]), metrics=outcome["metrics"],
                           history=outcome["history"], memory=memory)
