"""`adapterflow eval-set refresh`: a new frozen eval set from the current data, recorded for the next runs; the
next scheduled run retrains on it although its own inputs are unchanged."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient
from typer.testing import CliRunner

from adapterflow.cli.main import app
from adapterflow.core.home import Home
from adapterflow.evaluation.eval_sets import TAG_EVAL_SET, find_eval_set
from adapterflow.storage.store import Storage
from tests.conftest import ASSETS, tiny_config, write_config

pytestmark = pytest.mark.usefixtures("prefect_server")


@pytest.mark.slow  # three runs and a data check through the CLI: a minute on 2 cores
def test_refresh_freezes_a_new_eval_set_from_grown_data_and_the_next_run_retrains_on_it(
    tmp_path: Path, tiny_model_dir: Path,
) -> None:
    # the session's MLflow and home (a fresh store costs seconds): a model name of this test's own keeps it apart
    name = f"refresh-{tmp_path.name}"
    small = tiny_config(tiny_model_dir, sources=[{"path": str(ASSETS / "alpaca.jsonl")}], name=name)
    grown = tiny_config(tiny_model_dir, name=name)  # alpaca.jsonl and chat.jsonl
    runner = CliRunner()
    small_path = write_config(tmp_path, small, "small.yaml")
    first = runner.invoke(app, ["run", str(small_path)])
    assert first.exit_code == 0, first.output
    store = Storage.resolve(None, Home.from_env())
    frozen = find_eval_set(MlflowClient(), store, name)

    refreshed = runner.invoke(app, ["eval-set", "refresh", str(write_config(tmp_path, grown, "grown.yaml"))])
    assert refreshed.exit_code == 0, refreshed.output
    new = find_eval_set(MlflowClient(), store, name)
    assert new.id != frozen.id and f"new frozen eval set {new.id}" in refreshed.output
    runs = MlflowClient().search_runs([MlflowClient().get_experiment_by_name(name).experiment_id],
                                      order_by=["attributes.start_time DESC"], max_results=1)
    assert runs[0].data.tags[TAG_EVAL_SET] == new.id

    again = runner.invoke(app, ["run", str(small_path), "--summary-json", str(tmp_path / "again.json")])
    assert again.exit_code == 0, again.output
    summary = json.loads((tmp_path / "again.json").read_text())
    assert summary["outcome"] == "trained" and summary["model_version"] == "2"
    reason = MlflowClient().get_run(summary["mlflow_run_id"]).data.tags["adapterflow.retrain_reason"]
    assert "frozen eval set changed since run" in reason and f"-> {new.id[:12]}" in reason
    third = runner.invoke(app, ["run", str(small_path), "--summary-json", str(tmp_path / "third.json")])
    assert third.exit_code == 0 and json.loads((tmp_path / "third.json").read_text())["outcome"] != "trained"
