"""Nothing leaked: personal data in a malformed row and secrets in the environment and the config never reach
the MLflow store (database and artifacts) or the logs of a real run."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from adapterflow.core.home import Home
from benchmarks.reliability_leaks import NEEDLES, PLANTED_PROMPT, SECRET_ENV, occurrences, store_bytes, write_tickets
from schemas import load_config
from tests.conftest import ASSETS, tiny_config, write_config

pytestmark = pytest.mark.usefixtures("prefect_server")


def test_personal_data_and_secrets_never_reach_mlflow_or_logs(
    tmp_path: Path, home: Home, tiny_model_dir: Path, monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture, capfd: pytest.CaptureFixture[str],
) -> None:
    from flows.finetune import finetune

    for name, value in SECRET_ENV.items():
        monkeypatch.setenv(name, value)
    tickets = write_tickets(tmp_path)
    sources = [{"path": str(ASSETS / "alpaca.jsonl")}, {"path": str(ASSETS / "chat.jsonl")},
               {"path": str(tickets), "format": "alpaca"}]
    config = tiny_config(tiny_model_dir, sources=sources, tokenize={"max_length": 256, "system_prompt": PLANTED_PROMPT},
                         training={"max_steps": 4})
    summary = finetune(load_config(write_config(tmp_path, config)))

    assert summary["data"]["quarantined"] == 1 and summary["model_version"] == "1"
    client = MlflowClient()
    run = client.get_run(summary["mlflow_run_id"])
    logged_prompt = run.data.params["tokenize.system_prompt"]
    assert "HF_TOKEN=<SECRET:HF_TOKEN>" in logged_prompt and "postgresql://trainer:<SECRET:" in logged_prompt
    quarantine = Path(client.download_artifacts(run.info.run_id, "data/quarantine.jsonl", str(tmp_path)))
    row = json.loads(quarantine.read_text())
    assert "<EMAIL>" in row["raw"] and "<PHONE>" in row["raw"] and row["line"] == 3

    stored = store_bytes(home.mlflow_db, home.mlflow_artifacts)
    assert any(path.endswith("quarantine.jsonl") for path in stored) and any("mlflow.db" in path for path in stored)
    logs = caplog.text + "".join(capfd.readouterr())
    assert "ingested" in logs  # the stages' own lines were captured
    assert occurrences(NEEDLES, stored) == {needle: [] for needle in NEEDLES}
    assert occurrences(NEEDLES, {"logs": logs.encode()}) == {needle: [] for needle in NEEDLES}
