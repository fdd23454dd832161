"""The command line: exit codes and error output without tracebacks."""

from __future__ import annotations

from pathlib import Path

from typer.testing import CliRunner

from adapterflow.cli.main import app
from tests.conftest import ASSETS, write_config

runner = CliRunner()


def test_validate_reports_all_problems_with_exit_code_2(tmp_path: Path) -> None:
    config = {"name": "x", "data": {"sources": [{"path": str(ASSETS / "alpaca.jsonl")}]},
              "training": {"learning_rate": 0, "epochs": -1}, "evaluation": {"batch_size": "many"}}
    result = runner.invoke(app, ["validate", str(write_config(tmp_path, config))])
    assert result.exit_code == 2
    for path in ("training.learning_rate", "training.epochs", "evaluation.batch_size"):
        assert path in result.output
    assert "3 problem(s)" in result.output and "Traceback" not in result.output


def test_validate_accepts_a_good_config_and_overrides(tmp_path: Path) -> None:
    config = {"name": "x", "data": {"sources": [{"path": str(ASSETS / "alpaca.jsonl")}]}}
    path = write_config(tmp_path, config)
    assert runner.invoke(app, ["validate", str(path), "--set", "training.max_steps=3"]).exit_code == 0
    bad = runner.invoke(app, ["validate", str(path), "--set", "training.max_steps"])
    assert bad.exit_code == 2 and "dotted.key=value" in bad.output


def test_run_with_a_bad_config_exits_2_before_anything_runs(tmp_path: Path) -> None:
    result = runner.invoke(app, ["run", str(tmp_path / "missing.yaml")])
    assert result.exit_code == 2 and "config file not found" in result.output and "Traceback" not in result.output


def test_the_cli_configures_prefect_before_prefect_reads_its_settings(tmp_path: Path) -> None:
    """Prefect fixes its settings when first imported: importing the CLI must not import it, or PREFECT_HOME and
    the ephemeral API's start-up timeout that configure_environment sets are silently ignored."""
    import os
    import subprocess
    import sys

    script = ("import sys, adapterflow.cli.main; assert 'prefect' not in sys.modules, 'prefect imported early'\n"
              "from adapterflow.core.home import configure_environment; configure_environment()\n"
              "from prefect.settings import PREFECT_HOME, PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS as t\n"
              "print(PREFECT_HOME.value(), t.value())")
    env = {key: value for key, value in os.environ.items() if not key.startswith("PREFECT_")}
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                            env=env | {"ADAPTERFLOW_HOME": str(tmp_path)}, check=True)
    assert result.stdout.split() == [str(tmp_path / "prefect"), "120"]


def test_validate_names_the_settings_a_sweep_searches() -> None:
    sweep_config = Path(__file__).parent.parent / "configs" / "smollm2_lora_sweep_cpu.yaml"
    result = runner.invoke(app, ["validate", str(sweep_config)])
    assert result.exit_code == 0 and "a sweep over training.learning_rate, method.r" in result.output


def test_the_cron_runner_is_schedule_and_checks_its_cron_before_starting_anything(tmp_path: Path) -> None:
    """`schedule` is the cron runner (`serve` is what serving tools call serving models); a bad cron ends it with
    exit code 2 before a Prefect server is started."""
    path = write_config(tmp_path, {"name": "x", "data": {"sources": [{"path": str(ASSETS / "alpaca.jsonl")}]}})
    result = runner.invoke(app, ["schedule", str(path), "--cron", "every monday"])
    assert result.exit_code == 2 and "every monday" in result.output and "Traceback" not in result.output
    renamed = runner.invoke(app, ["serve", str(path), "--cron", "* * * * *"])
    assert renamed.exit_code == 2 and "No such command 'serve'" in renamed.output
