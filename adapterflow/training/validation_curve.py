"""The Trainer callback that decides when training stops: the validation loss every eval_steps (logged as val/*
step metrics), early stopping on it with the best step's weights put back at the end, a sweep's probe, and the
time budget that sets the number of steps from the measured speed and fits the learning-rate schedule to it.

A measurement leaves training as it was: eval mode without gradients, and the random number generators restored
afterwards (a DataLoader draws its seed from them), so measuring changes no trained weight.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from transformers import TrainerCallback, get_scheduler

from adapterflow.core.logs import stage_logger
from adapterflow.methods.artifacts import trainable_state
from adapterflow.tracking.run import RunTracker
from adapterflow.training.probe import HeldOutProbe, TrainingPruned
from adapterflow.training.stopping import (
    BEST_WEIGHTS_FILE,
    TIMED_STEPS,
    StoppingState,
    auto_eval_steps,
    describe_plan,
    improves,
    planned_steps,
    stop_reason_for_patience,
)
from schemas.training import TrainingConfig


def refit_schedule(scheduler: Any, args: Any, steps: int) -> None:
    """Make the learning-rate schedule (a LambdaLR, as the Trainer builds it) end at `steps` instead."""
    scheduler = getattr(scheduler, "scheduler", scheduler)  # accelerate may wrap it
    template = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    fitted = get_scheduler(args.lr_scheduler_type, template, num_warmup_steps=args.get_warmup_steps(steps),
                           num_training_steps=steps)
    scheduler.lr_lambdas = [fitted.lr_lambdas[0]] * len(scheduler.lr_lambdas)


class ValidationCurve(TrainerCallback):
    """`measure(model)` is the validation loss (None: no validation split, only the budget applies)."""

    def __init__(
        self, config: TrainingConfig, measure: Callable[[torch.nn.Module], float] | None, device: torch.device,
        tracker: RunTracker | None, history: list[dict[str, float]], state: StoppingState,
        probe: HeldOutProbe | None = None, best_weights: dict[str, torch.Tensor] | None = None,
    ) -> None:
        self.config = config
        self.measure = measure
        self.device = device
        self.tracker = tracker
        self.history = history
        self.state = state
        self.probe = probe
        self.best_weights = best_weights
        self.validation_last_seconds = 0.0
        self.kept_step = 0
        if probe is not None:
            self.state.eval_steps = probe.every_steps
        elif isinstance(config.eval_steps, int):
            self.state.eval_steps = config.eval_steps
        self._began = time.perf_counter()
        self._first_step: int | None = None
        self._first_step_end = 0.0
        self._validation_since_first = 0.0

    def elapsed(self) -> float:
        return self.state.elapsed_seconds + time.perf_counter() - self._began

    def on_train_begin(self, args: Any, state: Any, control: Any, lr_scheduler: Any = None, **kwargs: Any) -> None:
        self._began = time.perf_counter()
        if self.state.planned_steps is not None and lr_scheduler is not None:  # resumed under a budget plan
            refit_schedule(lr_scheduler, args, self.state.planned_steps)

    def on_save(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        folder = Path(args.output_dir) / f"checkpoint-{state.global_step}"
        if not state.is_world_process_zero or not folder.is_dir():
            return
        from safetensors.torch import save_file

        saved = StoppingState(**{**vars(self.state), "elapsed_seconds": self.elapsed()})
        saved.save(folder)
        if self.best_weights is not None:
            save_file(self.best_weights, folder / BEST_WEIGHTS_FILE)

    def on_step_end(self, args: Any, state: Any, control: Any, model: Any = None, lr_scheduler: Any = None,
                    **kwargs: Any) -> None:
        step = state.global_step
        now = time.perf_counter()
        if self._first_step is None:
            self._first_step, self._first_step_end = step, now
            return self._finish_step(args, state, control, model, step)
        timed = step - self._first_step
        if timed == TIMED_STEPS and self.state.seconds_per_step is None:
            self.state.seconds_per_step = (now - self._first_step_end - self._validation_since_first) / timed
            self._plan(args, state, model, lr_scheduler, step)
            return self._finish_step(args, state, control, model, step)
        measurements = self.state.measurements
        self._finish_step(args, state, control, model, step)
        if self.state.measurements > measurements and self.state.planned_steps is not None \
                and not control.should_training_stop:
            self._replan(args, state, lr_scheduler, step, now - self._first_step_end, timed)

    def _replan(self, args: Any, state: Any, lr_scheduler: Any, step: int, since_first: float, timed: int) -> None:
        """At each measurement under a budget, the plan again from the speed of every step so far: the first
        timed steps can be faster than the rest (shorter packed rows, no checkpoint yet), and a plan kept from
        them would end at the budget's hard stop with the learning rate far from its end."""
        self.state.seconds_per_step = (since_first - (self._validation_since_first - self.validation_last_seconds)) \
            / timed
        planned = planned_steps(self.config.time_budget, self.elapsed(), step, self.state.seconds_per_step,
                                self.validation_last_seconds, self.state.eval_steps or state.max_steps,
                                state.max_steps)
        if planned == self.state.planned_steps:
            return
        stage_logger().info("time budget: %.2fs per step so far, re-planned to %d steps (was %d)",
                            self.state.seconds_per_step, planned, self.state.planned_steps)
        self.state.planned_steps = planned
        if lr_scheduler is not None:
            refit_schedule(lr_scheduler, args, planned)
        if self.tracker is not None:
            self.tracker.log_metrics({"train/planned_steps": float(planned),
                                      "train/seconds_per_step": self.state.seconds_per_step}, step=step)

    def _plan(self, args: Any, state: Any, model: Any, lr_scheduler: Any, step: int) -> None:
        """eval_steps auto and the budget plan, once the speed is measured."""
        if self.measure is not None and self.state.eval_steps is None:
            self._follow_curve(self._validate(model, step), step, model)
            self.state.eval_steps = auto_eval_steps(self.validation_last_seconds, self.state.seconds_per_step)
            stage_logger().info("validation: %.1fs per measurement, %.2fs per step: every %d steps (eval_steps auto)",
                                self.validation_last_seconds, self.state.seconds_per_step, self.state.eval_steps)
        if self.config.time_budget is None:
            return
        validation = self.validation_last_seconds if self.measure is not None else 0.0
        every = self.state.eval_steps or state.max_steps
        planned = planned_steps(self.config.time_budget, self.elapsed(), step, self.state.seconds_per_step,
                                validation, every, state.max_steps)
        if planned < state.max_steps:
            self.state.planned_steps = planned
            refit_schedule(lr_scheduler, args, planned)
        else:
            self.state.planned_steps = state.max_steps
        message = describe_plan(self.config.time_budget, self.state, state.max_steps, validation)
        stage_logger().info(message)
        if self.tracker is not None:
            self.tracker.log_metrics({"train/budget_seconds": self.config.time_budget,
                                      "train/planned_steps": float(self.state.planned_steps),
                                      "train/seconds_per_step": self.state.seconds_per_step}, step=step)

    def _finish_step(self, args: Any, state: Any, control: Any, model: Any, step: int) -> None:
        last_planned = self.state.planned_steps is not None and step >= self.state.planned_steps
        over_budget = self.config.time_budget is not None and self.elapsed() >= self.config.time_budget
        last = step >= state.max_steps or last_planned or over_budget
        due = self.state.eval_steps is not None and step % self.state.eval_steps == 0
        if self.measure is not None and (due or last) and not self._measured(step):
            loss = self._validate(model, step)
            self._follow_curve(loss, step, model)
            if self.probe is not None:
                self.probe.history.append((step, loss))
                if self.probe.report(step, loss) and not last:
                    raise TrainingPruned(step, loss)
            reason = stop_reason_for_patience(self.state, self.config.early_stopping.patience) \
                if self.config.early_stopping.enabled else None
            if reason is not None and not last:
                self._stop(control, reason)
        if last and step < state.max_steps and not control.should_training_stop:
            budget = self.config.time_budget
            self._stop(control, f"time budget {budget:.0f}s: stopped at step {step} of at most {state.max_steps}")

    def _measured(self, step: int) -> bool:
        """Measured already: a training restarted after running out of memory repeats no measurement."""
        return any(entry["step"] == step and "val/loss" in entry for entry in self.history)

    def _stop(self, control: Any, reason: str) -> None:
        self.state.stopped_early = reason
        control.should_training_stop = True
        stage_logger().info("training stops: %s", reason)

    def _validate(self, model: torch.nn.Module, step: int) -> float:
        started = time.perf_counter()
        with torch.random.fork_rng(devices=[self.device] if self.device.type == "cuda" else []):
            loss = self.measure(model)
        model.train()
        self.validation_last_seconds = time.perf_counter() - started
        self.state.validation_seconds += self.validation_last_seconds
        self._validation_since_first += self.validation_last_seconds
        self.state.measurements += 1
        metrics = {"val/loss": loss, "val/perplexity": math.exp(min(loss, 50.0))}
        self.history.append({"step": step, **metrics})
        if self.tracker is not None:
            self.tracker.log_metrics(metrics, step=step)
        return loss

    def _follow_curve(self, loss: float, step: int, model: torch.nn.Module) -> None:
        if improves(loss, self.state.best_loss, self.config.early_stopping.min_delta):
            self.state.best_step, self.state.best_loss = step, loss
            self.state.measurements_without_improvement = 0
            self.best_weights = trainable_state(model)
        else:
            self.state.measurements_without_improvement += 1

    def on_train_end(self, args: Any, state: Any, control: Any, model: Any = None, **kwargs: Any) -> None:
        """Under early stopping, put the best step's weights back when a later step was worse: they are what gets
        evaluated and registered."""
        self.state.elapsed_seconds = self.elapsed()
        self._began = time.perf_counter()
        self.kept_step = state.global_step
        restore = self.config.early_stopping.enabled and self.best_weights is not None
        if not restore or self.state.best_step == state.global_step:
            return
        self.kept_step = self.state.best_step
        parameters = dict(model.named_parameters())
        with torch.no_grad():
            for name, value in self.best_weights.items():
                parameters[name].copy_(value.to(parameters[name].device))
        stage_logger().info("kept the weights of step %d (val/loss %.4f), the best of %d measurements",
                            self.state.best_step, self.state.best_loss, self.state.measurements)

    def metrics(self) -> dict[str, float]:
        """Whole-run figures: the step whose weights are kept, the best measured step and its loss, and what
        validation cost."""
        if self.state.measurements == 0:
            return {}
        found = {"train/kept_step": float(self.kept_step), "train/validation_seconds": self.state.validation_seconds,
                 "train/validation_share": self.state.validation_seconds / max(self.state.elapsed_seconds, 1e-9),
                 "train/validation_measurements": float(self.state.measurements)}
        if self.state.best_step is not None:
            found |= {"train/best_step": float(self.state.best_step), "val/best_loss": self.state.best_loss}
        return found


def load_best_weights(folder: Path | None) -> dict[str, torch.Tensor] | None:
    """The best step's weights saved with a checkpoint, for a resumed training."""
    path = folder / BEST_WEIGHTS_FILE if folder is not None else None
    if path is None or not path.is_file():
        return None
    from safetensors.torch import load_file

    return load_file(path)
