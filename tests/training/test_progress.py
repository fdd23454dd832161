"""Progress a person can read: training shows a rich bar on a terminal and plain lines elsewhere, with no raw
Trainer output; every stage says how long it took."""

from __future__ import annotations

import logging
import re
from io import StringIO
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from rich.console import Console
from rich.text import Text
from transformers import TrainerState

from adapterflow.tokenization.collate import TokenCounter
from adapterflow.training.callbacks import ThroughputMetrics
from adapterflow.training.progress import ProgressDisplay, eta_seconds, format_duration, progress_line

LOGGER = "tests.progress"
# what the Trainer hands its callbacks at a logging step
TRAINER_LOGS = {"loss": 2.3101, "grad_norm": 4.25, "learning_rate": 0.02, "epoch": 0.5}


def test_a_progress_line_says_step_total_loss_tokens_per_second_and_time_left() -> None:
    assert progress_line(10, 60, 2.3101, 1234.4, 41.2) == "step 10/60 (17%) loss 2.31 1,234 tokens/s ETA 0:41"
    assert progress_line(1, 60, 6.9, None, None) == "step 1/60 (2%) loss 6.9 - tokens/s ETA -"
    assert format_duration(3723) == "1:02:03" and format_duration(725) == "12:05"
    assert eta_seconds(elapsed=10.0, done=10, total=60) == 50.0 and eta_seconds(3.0, 0, 60) is None


def simulate_training(display: ProgressDisplay, counter: TokenCounter, metrics: ThroughputMetrics,
                      steps: int = 4, logging_steps: int = 2, main: bool = True) -> None:
    """Fire the callbacks in the Trainer's order: ThroughputMetrics handles each log before the display."""
    args = SimpleNamespace(logging_steps=logging_steps)
    state = TrainerState(max_steps=steps, global_step=0, is_world_process_zero=main)
    for callback in (metrics, display):
        callback.on_train_begin(args, state, None)
    for step in range(1, steps + 1):
        counter.add(real=500, computed=512)
        state.global_step = step
        display.on_step_end(args, state, None)
        if step % logging_steps == 0:
            for callback in (metrics, display):
                callback.on_log(args, state, None, logs=dict(TRAINER_LOGS))
    display.on_train_end(args, state, None)


def display_on(console: Console) -> tuple[ProgressDisplay, TokenCounter, ThroughputMetrics]:
    counter = TokenCounter()
    metrics = ThroughputMetrics(counter, torch.device("cpu"))
    return ProgressDisplay(metrics, console=console, logger=logging.getLogger(LOGGER)), counter, metrics


def test_off_a_terminal_each_logging_step_is_one_plain_log_line(caplog: pytest.LogCaptureFixture) -> None:
    console = Console(file=StringIO())  # a file: not a terminal, like CI or a Prefect worker
    display, counter, metrics = display_on(console)
    with caplog.at_level(logging.INFO, logger=LOGGER):
        simulate_training(display, counter, metrics)
    lines = [record.getMessage() for record in caplog.records]
    assert lines[0] == "training: 4 steps, a line every 2"
    assert [line.split(" loss")[0] for line in lines[1:3]] == ["step 2/4 (50%)", "step 4/4 (100%)"]
    for line in lines[1:3]:
        rate = float(line.split(" loss 2.31 ")[1].split(" tokens/s")[0].replace(",", ""))
        assert rate > 0 and line.endswith("ETA 0:00")  # a simulated step takes no time
    assert len(lines) == 3
    assert not any("grad_norm" in line or "{" in line for line in lines)
    assert console.file.getvalue() == ""  # no bar off a terminal


def test_on_a_terminal_training_shows_a_live_bar_and_logs_nothing(caplog: pytest.LogCaptureFixture) -> None:
    console = Console(file=StringIO(), force_terminal=True, width=140)
    display, counter, metrics = display_on(console)
    with caplog.at_level(logging.INFO, logger=LOGGER):
        simulate_training(display, counter, metrics)
    screen = Text.from_ansi(console.file.getvalue()).plain
    assert "━" in screen and re.search(r"4/4 steps loss 2\.31 [1-9][\d,]* tokens/s \d:\d\d:\d\d ETA 0:00", screen)
    assert caplog.records == []


def test_only_the_main_process_shows_progress(caplog: pytest.LogCaptureFixture) -> None:
    console = Console(file=StringIO(), force_terminal=True)
    display, counter, metrics = display_on(console)
    with caplog.at_level(logging.INFO, logger=LOGGER):
        simulate_training(display, counter, metrics, main=False)
    assert console.file.getvalue() == "" and caplog.records == []


def test_a_training_run_prints_no_tqdm_bar_nor_log_dicts(
    tmp_path: Path, tiny_model_dir: Path, capfd: pytest.CaptureFixture, caplog: pytest.LogCaptureFixture
) -> None:
    from transformers.utils import logging as transformers_logging

    from adapterflow.core.home import Home
    from adapterflow.data.splitting import split_rows
    from adapterflow.storage.records import BaseModelRef
    from adapterflow.storage.store import Storage
    from adapterflow.training.trainer import train_adapter
    from schemas.data import LeakageConfig, SplitConfig
    from schemas.method import LoraMethod
    from schemas.tokenize import TokenizeConfig
    from schemas.training import TrainingConfig
    from tasks.tokenize import tokenize_splits
    from tests.tasks.helpers import filtered, questions

    home = Home(tmp_path / "home")
    base = BaseModelRef(name="tiny", path=str(tiny_model_dir), sha256="x")
    split = split_rows(filtered(tmp_path / "data", questions(16)), SplitConfig(eval_size=0.2, max_eval_rows=None),
                       LeakageConfig(enabled=False), Storage.local(home.cache), 1)
    tokenized = tokenize_splits(split, base, TokenizeConfig(max_length=64), Storage.local(home.cache))
    config = TrainingConfig(max_steps=4, batch_size=4, logging_steps=2, precision="fp32")
    # the CLI hides the hub's own bars (model loading) with quiet_third_party; the Trainer's bar is separate
    was_enabled = transformers_logging.is_progress_bar_enabled()
    transformers_logging.disable_progress_bar()
    capfd.readouterr()
    try:
        with caplog.at_level(logging.INFO, logger="adapterflow"):
            train_adapter(Path(tokenized.uri), base, LoraMethod(type="lora", r=4), config, torch.device("cpu"),
                          "fp32", tmp_path / "out")
    finally:
        if was_enabled:
            transformers_logging.enable_progress_bar()
    out, err = capfd.readouterr()
    console = out + err
    assert "it/s" not in console and "%|" not in console  # tqdm's bar
    assert "'loss'" not in console and "grad_norm" not in console and "train_runtime" not in console
    lines = [record.getMessage() for record in caplog.records]
    assert [line.split(" loss")[0] for line in lines if line.startswith("step ")] == \
        ["step 1/4 (25%)", "step 2/4 (50%)", "step 4/4 (100%)"]


def test_a_stage_logs_one_line_with_its_duration(caplog: pytest.LogCaptureFixture) -> None:
    from adapterflow.orchestration.stage import stage
    from adapterflow.storage.records import StageRecord

    @stage("demo")
    def demo(skipped: bool) -> StageRecord:
        return StageRecord(skipped=skipped)

    with caplog.at_level(logging.INFO, logger="adapterflow"):
        demo.fn(False)
        demo.fn(True)
    lines = [record.getMessage() for record in caplog.records]
    assert [re.sub(r"\d+\.\d", "N", line) for line in lines] == ["demo done in N s", "demo done in N s (from cache)"]
