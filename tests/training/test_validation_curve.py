"""The validation curve while training: measured at its cadence, early stopping that keeps the best step's
weights, the time budget's plan and its learning-rate schedule, and a state that survives a checkpoint."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from transformers import get_scheduler

from adapterflow.training import validation_curve
from adapterflow.training.stopping import StoppingState
from adapterflow.training.trainer import train_adapter
from adapterflow.training.validation_curve import ValidationCurve, load_best_weights
from schemas.method import LoraMethod
from schemas.training import EarlyStoppingConfig, TrainingConfig
from tests.tasks.helpers import tokenized_questions


class FakeClock:
    """time.perf_counter for the callback: training steps and measurements advance it by what they 'take'."""

    def __init__(self) -> None:
        self.now = 0.0

    def perf_counter(self) -> float:
        return self.now


def drive(callback: ValidationCurve, clock: FakeClock, max_steps: int,
          step_seconds: float | Callable[[int], float] = 2.0, scheduler: object = None) -> tuple[int, SimpleNamespace]:
    """Run the callback through the Trainer's step loop, as a Trainer calls it; the step it stopped at.
    `step_seconds`: what every step takes, or what step N takes."""
    args = SimpleNamespace(lr_scheduler_type="cosine", get_warmup_steps=lambda steps: 0, output_dir="/nonexistent")
    control = SimpleNamespace(should_training_stop=False)
    callback.on_train_begin(args, None, control, lr_scheduler=scheduler)
    model = torch.nn.Linear(2, 1)
    for step in range(1, max_steps + 1):
        clock.now += step_seconds(step) if callable(step_seconds) else step_seconds
        if scheduler is not None:
            scheduler.optimizer.step()
            scheduler.step()
        state = SimpleNamespace(global_step=step, max_steps=max_steps, is_world_process_zero=True)
        callback.on_step_end(args, state, control, model=model, lr_scheduler=scheduler)
        if control.should_training_stop:
            return step, control
    return max_steps, control


def curve(config: TrainingConfig, clock: FakeClock, losses: list[float] | None = None, history: list | None = None,
          state: StoppingState | None = None) -> tuple[ValidationCurve, list[int]]:
    measured: list[int] = []
    values = iter(losses or [])

    def measure(model: torch.nn.Module) -> float:
        clock.now += 5.0  # a measurement takes 5 s
        measured.append(1)
        return next(values, 1.0)

    return ValidationCurve(config, measure, torch.device("cpu"), None, history if history is not None else [],
                           state or StoppingState()), measured


def test_the_budget_plans_the_steps_and_fits_the_schedule_to_them(monkeypatch: pytest.MonkeyPatch) -> None:
    clock = FakeClock()
    monkeypatch.setattr(validation_curve, "time", clock)
    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.1)
    scheduler = get_scheduler("cosine", optimizer, num_warmup_steps=0, num_training_steps=10_000)
    config = TrainingConfig(time_budget=200, early_stopping=EarlyStoppingConfig(enabled=False))
    callback, _ = curve(config, clock)
    stopped, _ = drive(callback, clock, 10_000, scheduler=scheduler)
    # timed over steps 2-4 (the first pays for warm-up): 2 s per step; a 5 s measurement: every 32 steps (8%)
    assert callback.state.seconds_per_step == 2.0 and callback.state.eval_steps == 32
    # (200 s - 13 s gone - 5 s for the last measurement) / (2 + 5/32 s per step) = 84 more steps after step 4
    assert callback.state.planned_steps == 88 and stopped == 88
    assert [entry["step"] for entry in callback.history] == [4, 32, 64, 88]
    assert callback.state.stopped_early == "time budget 200s: stopped at step 88 of at most 10000"
    assert clock.now <= 200
    assert scheduler.get_last_lr()[0] == pytest.approx(0.0, abs=1e-12)  # the cosine ends at the planned step


def test_steps_slower_than_the_timed_ones_re_plan_the_budget_at_each_measurement(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    clock = FakeClock()
    monkeypatch.setattr(validation_curve, "time", clock)
    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.1)
    scheduler = get_scheduler("cosine", optimizer, num_warmup_steps=0, num_training_steps=10_000)
    config = TrainingConfig(time_budget=200, early_stopping=EarlyStoppingConfig(enabled=False))
    callback, _ = curve(config, clock)
    # timed at 2 s per step (steps 2-4), then every step takes 3 s: the first plan (88 steps) would run out of
    # budget near step 62 with the cosine at a third of its peak
    stopped, _ = drive(callback, clock, 10_000, step_seconds=lambda step: 2.0 if step <= 4 else 3.0,
                       scheduler=scheduler)
    assert callback.state.planned_steps == stopped < 88
    assert callback.state.stopped_early == f"time budget 200s: stopped at step {stopped} of at most 10000"
    assert clock.now <= 200
    assert scheduler.get_last_lr()[0] < 0.01 * 0.1  # re-fitted: the cosine (nearly) ends where training does


def test_early_stopping_waits_for_patience_then_stops(monkeypatch: pytest.MonkeyPatch) -> None:
    clock = FakeClock()
    monkeypatch.setattr(validation_curve, "time", clock)
    config = TrainingConfig(eval_steps=5, early_stopping=EarlyStoppingConfig(patience=2, min_delta=0.01))
    losses = [2.0, 1.5, 1.495, 1.2, 1.3, 1.25, 9.0]  # 1.495 is within min_delta: no improvement
    callback, _ = curve(config, clock, losses)
    stopped, _ = drive(callback, clock, 1000)
    assert [entry["step"] for entry in callback.history] == [5, 10, 15, 20, 25, 30]
    assert stopped == 30 and callback.state.best_step == 20 and callback.state.best_loss == 1.2
    assert callback.state.stopped_early == \
        "early stopping: val/loss did not improve for 2 measurements (best 1.2000 at step 20)"


def test_a_restarted_training_measures_no_step_twice(monkeypatch: pytest.MonkeyPatch) -> None:
    clock = FakeClock()
    monkeypatch.setattr(validation_curve, "time", clock)
    history = [{"step": 2, "val/loss": 1.0}, {"step": 4, "val/loss": 1.0}]  # measured before running out of memory
    callback, measured = curve(TrainingConfig(eval_steps=2), clock, history=history)
    drive(callback, clock, 6)
    assert [entry["step"] for entry in history] == [2, 4, 6] and len(measured) == 1


def test_patience_and_the_best_weights_survive_a_checkpoint(tmp_path: Path) -> None:
    model = torch.nn.Linear(2, 1)
    config = TrainingConfig(eval_steps=1, early_stopping=EarlyStoppingConfig(patience=2))
    first, _ = curve(config, FakeClock(), losses=[1.0, 1.5])
    control = SimpleNamespace(should_training_stop=False)
    for step in (1, 2):
        first.on_step_end(None, SimpleNamespace(global_step=step, max_steps=10), control, model=model)
    (tmp_path / "checkpoint-2").mkdir()
    first.on_save(SimpleNamespace(output_dir=str(tmp_path)), SimpleNamespace(global_step=2, is_world_process_zero=True),
                  control)
    saved = StoppingState.load(tmp_path / "checkpoint-2")
    assert (saved.best_step, saved.measurements_without_improvement, saved.eval_steps) == (1, 1, 1)
    best = load_best_weights(tmp_path / "checkpoint-2")
    assert best.keys() == first.best_weights.keys()

    resumed, _ = curve(config, FakeClock(), losses=[1.6], state=saved)
    resumed.best_weights = best
    resumed.on_step_end(None, SimpleNamespace(global_step=3, max_steps=10), control, model=model)
    assert control.should_training_stop and resumed.state.stopped_early.endswith("(best 1.0000 at step 1)")


LONG = 200  # steps: several times what this data needs before its validation loss stops falling (about 36)


def long_run(tokenized_dir: Path, base, out: Path, steps: int, early_stopping: bool):  # noqa: ANN001, ANN201
    config = TrainingConfig(max_steps=steps, batch_size=4, learning_rate=0.03, lr_scheduler="constant",
                            warmup_ratio=0.0, logging_steps=1, precision="fp32", optimizer="adamw_torch",
                            checkpoint_steps=None, eval_steps=2,
                            early_stopping=EarlyStoppingConfig(enabled=early_stopping, patience=3))
    return train_adapter(tokenized_dir, base, LoraMethod(type="lora", r=8, dropout=0.0), config,
                         torch.device("cpu"), "fp32", out)


def weights(outcome) -> dict[str, torch.Tensor]:  # noqa: ANN001
    from safetensors.torch import load_file

    return load_file(str(outcome.output_dir / "adapter_model.safetensors"))


def test_early_stopping_on_a_long_run_keeps_the_best_steps_weights(tmp_path: Path, tiny_model_dir: Path) -> None:
    _, base, tokenized = tokenized_questions(tmp_path, tiny_model_dir, rows=60, eval_size=0.1, validation_rows=8)
    tokenized_dir = Path(tokenized.uri)
    (tokenized_dir / "eval.parquet").write_bytes(b"unreadable: what selects while training must not read the eval set")
    stopped = long_run(tokenized_dir, base, tmp_path / "stopped", LONG, early_stopping=True)
    best, steps = int(stopped.metrics["train/best_step"]), int(stopped.metrics["train/steps"])
    curve = [entry["val/loss"] for entry in stopped.history if "val/loss" in entry]
    assert steps < LONG and steps <= 2 * best and best >= 10, (best, steps, curve)
    assert stopped.stopped_early.startswith("early stopping: val/loss did not improve for 3 measurements")
    assert min(curve) == stopped.metrics["val/best_loss"] < curve[0]
    # the saved adapter is the best step's: a run that ends there (constant learning rate) trains the same weights
    until_best = long_run(tokenized_dir, base, tmp_path / "until-best", best, early_stopping=False)
    kept, expected = weights(stopped), weights(until_best)
    assert kept.keys() == expected.keys()
    for name, tensor in expected.items():
        assert torch.equal(kept[name], tensor), name


def test_a_time_budget_ends_a_long_training_early(tmp_path: Path, tiny_model_dir: Path) -> None:
    _, base, tokenized = tokenized_questions(tmp_path, tiny_model_dir, rows=40, eval_size=0.1, validation_rows=8)
    config = TrainingConfig(max_steps=100_000, batch_size=2, time_budget="3s", logging_steps=10, precision="fp32",
                            optimizer="adamw_torch", checkpoint_steps=None)
    outcome = train_adapter(Path(tokenized.uri), base, LoraMethod(type="lora", r=4), config, torch.device("cpu"),
                            "fp32", tmp_path / "out")
    steps = int(outcome.metrics["train/steps"])
    assert 4 <= steps < 100_000 and outcome.stopped_early.startswith("time budget 3s: stopped at step")
    assert outcome.metrics["train/validation_measurements"] >= 2  # eval_steps auto, and the last step
