"""Nothing leaked: personal data in a malformed row and secrets in the environment and the config never reach
the MLflow store (database and artifacts) or the logs of a real run."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from adapterflow.home import Home
from schemas import load_config
from tests.conftest import ASSETS, tiny_config, write_config

pytestmark = pytest.mark.usefixtures("prefect_server")

EMAIL = "jane.doe@example.com"
PHONE = "+1 415 555 0123"
AWS_SECRET = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
HF_TOKEN = "hf_Q7bX2mLpR9sT4vW8yZ1aC3dE5fG6hJ0kNq"
DB_PASSWORD = "Pg-Pass-4821"
DB_URL = f"postgresql://trainer:{DB_PASSWORD}@db.internal:5432/tickets"
# a broken export line: the row never reaches training, but the quarantine keeps it whole
MALFORMED = ('{"instruction": "Reset my account, I am ' + EMAIL + ', call me on ' + PHONE
             + '", "output": "Sent a reset link to the address on file')
TICKETS = [
    {"instruction": "How do I reset my password?", "output": "Use the reset link on the sign-in page."},
    {"instruction": "Where are invoices kept?", "output": "Under Billing, one PDF per month."},
]


def store_bytes(home: Home) -> dict[str, bytes]:
    """Every file of the embedded MLflow store: the SQLite database (and any journal) and every artifact."""
    files = [path for path in home.root.glob("mlflow.db*") if path.is_file()]
    files += [path for path in home.mlflow_artifacts.rglob("*") if path.is_file()]
    return {str(path): path.read_bytes() for path in files}


def test_personal_data_and_secrets_never_reach_mlflow_or_logs(
    tmp_path: Path, home: Home, tiny_model_dir: Path, monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture, capfd: pytest.CaptureFixture[str],
) -> None:
    from flows.finetune import finetune

    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", AWS_SECRET)
    monkeypatch.setenv("HF_TOKEN", HF_TOKEN)
    monkeypatch.setenv("DATABASE_URL", DB_URL)
    tickets = tmp_path / "tickets.jsonl"
    tickets.write_text("\n".join([*map(json.dumps, TICKETS), MALFORMED]) + "\n")
    sources = [{"path": str(ASSETS / "alpaca.jsonl")}, {"path": str(ASSETS / "chat.jsonl")},
               {"path": str(tickets), "format": "alpaca"}]
    # pasted setup notes: the hub token and the tickets database's URL end up in the prompt
    prompt = f"You answer questions about Python. Setup: HF_TOKEN={HF_TOKEN}, tickets from {DB_URL}."
    config = tiny_config(tiny_model_dir, sources=sources, tokenize={"max_length": 256, "system_prompt": prompt},
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

    stored = store_bytes(home)
    assert any(path.endswith("quarantine.jsonl") for path in stored) and any("mlflow.db" in path for path in stored)
    logs = caplog.text + "".join(capfd.readouterr())
    assert "ingested" in logs  # the stages' own lines were captured
    for needle in (EMAIL, PHONE, "415 555 0123", AWS_SECRET, HF_TOKEN, DB_PASSWORD):
        leaks = [path for path, content in stored.items() if needle.encode() in content]
        assert not leaks, f"{needle!r} in {leaks}"
        assert needle not in logs
