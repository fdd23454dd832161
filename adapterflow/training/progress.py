"""Training progress for people: a live bar on a terminal, one plain log line per logging step elsewhere."""

from __future__ import annotations

import logging
import time
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TaskID, TextColumn, TimeElapsedColumn
from transformers import TrainerCallback

from adapterflow.core.logs import stage_logger
from adapterflow.training.callbacks import ThroughputMetrics

UNKNOWN = "-"  # a figure not measured yet (tokens/s before the first logging step, the ETA before the first step)


def format_duration(seconds: float) -> str:
    """0:41, 12:05 or 1:02:03."""
    minutes, secs = divmod(round(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


def eta_seconds(elapsed: float, done: int, total: int) -> float | None:
    """Time left at the mean pace so far (None before the first step)."""
    if done <= 0:
        return None
    return elapsed / done * max(total - done, 0)


def format_eta(seconds: float | None) -> str:
    return UNKNOWN if seconds is None else format_duration(seconds)


def format_loss(loss: float) -> str:
    return f"{loss:.4g}"


def format_rate(tokens_per_second: float | None) -> str:
    return UNKNOWN if tokens_per_second is None else f"{tokens_per_second:,.0f}"


def progress_line(step: int, total: int, loss: float, tokens_per_second: float | None, eta: float | None) -> str:
    """One logging step for a log file: 'step 10/60 (17%) loss 2.31 1,234 tokens/s ETA 0:41'."""
    share = 100 * step / total if total else 100.0
    return (f"step {step}/{total} ({share:.0f}%) loss {format_loss(loss)} {format_rate(tokens_per_second)} tokens/s "
            f"ETA {format_eta(eta)}")


class ProgressDisplay(TrainerCallback):
    """Shows training progress: step/total, loss, real tokens/s (measured by `throughput`) and the time left.

    On a terminal it is a live rich bar; anywhere else (CI, a Prefect worker, output piped to a file) each
    logging step becomes one line on the stage's logger, which Prefect also sends to its UI. Only the world's
    main process shows anything. Call `close()` after `trainer.train()` however it ended, so a failing run
    still gives the terminal back.
    """

    def __init__(self, throughput: ThroughputMetrics, console: Console | None = None,
                 logger: logging.Logger | logging.LoggerAdapter | None = None) -> None:
        self.throughput = throughput
        self.console = console or Console(stderr=True)
        self.logger = logger
        self.total = 0
        self._first_step = 0
        self._started = time.perf_counter()
        self._progress: Progress | None = None
        self._task: TaskID | None = None
        self._shown = False

    def on_train_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        self._shown = state.is_world_process_zero
        if not self._shown:
            return
        self.logger = self.logger or stage_logger()  # here, in the training task's run context
        self.total, self._first_step = state.max_steps, state.global_step
        self._started = time.perf_counter()
        if self.console.is_terminal:
            self._progress = Progress(
                TextColumn("[bold]train"), BarColumn(), MofNCompleteColumn(), TextColumn("steps"),
                TextColumn("loss {task.fields[loss]}"), TextColumn("{task.fields[rate]} tokens/s"),
                TimeElapsedColumn(), TextColumn("ETA {task.fields[eta]}"), console=self.console,
            )
            self._task = self._progress.add_task("train", total=self.total, completed=state.global_step,
                                                 loss=UNKNOWN, rate=UNKNOWN, eta=UNKNOWN)
            self._progress.start()
        else:
            self.logger.info("training: %d steps, a line every %d", self.total, args.logging_steps)

    def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        if self._progress is not None:
            self._progress.update(self._task, completed=state.global_step, eta=format_eta(self._eta(state)))

    def on_log(self, args: Any, state: Any, control: Any, logs: dict[str, float] | None = None, **kwargs: Any) -> None:
        if not self._shown or not logs or "loss" not in logs:
            return
        # ThroughputMetrics handles the same log first (it is registered before this callback)
        rate = self.throughput.latest(state.global_step).get("train/tokens_per_second")
        if self._progress is not None:
            self._progress.update(self._task, loss=format_loss(float(logs["loss"])), rate=format_rate(rate))
        else:
            self.logger.info(progress_line(state.global_step, self.total, float(logs["loss"]), rate, self._eta(state)))

    def on_train_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        self.close()  # the train stage logs how it ended and how long it took

    def close(self) -> None:
        """Stop the live bar (it keeps its last state on screen)."""
        if self._progress is not None:
            self._progress.stop()
            self._progress = None

    def _eta(self, state: Any) -> float | None:
        return eta_seconds(time.perf_counter() - self._started, state.global_step - self._first_step, self.total)
