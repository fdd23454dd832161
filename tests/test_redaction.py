"""The one redaction point: what RunTracker logs carries no secrets, and no personal data under data.pii."""

from __future__ import annotations

import json
from pathlib import Path

import orjson
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from mlflow.tracking import MlflowClient
from mlflow.utils.validation import MAX_PARAM_VAL_LENGTH

from adapterflow.core.home import Home
from adapterflow.tracking.redaction import Redactor
from adapterflow.tracking.run import RunTracker
from schemas.data import PiiConfig

TOKEN = "hf_Q7bX2mLpR9sT4vW8yZ1aC3dE5fG6hJ0kNq"
EMAIL = "jane.doe@example.com"
PHONE = "+1 415 555 0123"
ROW = f"Reset my account, I am {EMAIL}, call me on {PHONE}"


@pytest.fixture(autouse=True)
def token(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_TOKEN", TOKEN)


def test_values_keep_their_shape_and_numbers() -> None:
    redacted = Redactor(PiiConfig()).value(
        {"raw": ROW, "line": 3, "share": 0.25, "ok": True, "rows": [ROW, None], EMAIL: f"token {TOKEN}"})
    assert redacted == {"raw": "Reset my account, I am <EMAIL>, call me on <PHONE>", "line": 3, "share": 0.25,
                        "ok": True, "rows": ["Reset my account, I am <EMAIL>, call me on <PHONE>", None],
                        "<EMAIL>": "token <SECRET:HF_TOKEN>"}


def test_pii_report_redacts_what_is_logged_and_off_still_scrubs_secrets() -> None:
    assert Redactor(PiiConfig(action="report")).text(ROW) == "Reset my account, I am <EMAIL>, call me on <PHONE>"
    redactor = Redactor(PiiConfig(action="off"))
    assert redactor.text(f"{ROW} {TOKEN}") == f"{ROW} <SECRET:HF_TOKEN>"
    assert Redactor(None).text(f"{ROW} {TOKEN}") == f"{ROW} <SECRET:HF_TOKEN>"


def test_files_are_redacted_by_kind(tmp_path: Path) -> None:
    source, out = tmp_path / "in", tmp_path / "out"
    (source / "docs").mkdir(parents=True)
    broken = '{"instruction": "' + ROW + '", "output": "cut'
    (source / "quarantine.jsonl").write_bytes(
        orjson.dumps({"line": 3, "reason": "invalid JSON", "raw": broken}) + b"\n" + b"not json " + EMAIL.encode() + b"\n")
    (source / "report.json").write_text(json.dumps({"clusters": [{"kept_text": ROW}], "count": 2}))
    (source / "config.yaml").write_text(f"system_prompt: {ROW}\n")
    pq.write_table(pa.table({"note": [ROW] * 3, "line": [1, 2, 3],
                             "messages": [[{"role": "user", "content": ROW}]] * 3}), source / "removed.parquet")
    (source / "docs" / "index.html").write_text(f'<a href="https://unpkg.com/table@1.19.1/x.js">{TOKEN}</a>')
    (source / "docs" / "plot.png").write_bytes(b"\x89PNG" + EMAIL.encode())  # binary: logged as it is

    Redactor(PiiConfig()).tree(source, out)

    lines = (out / "quarantine.jsonl").read_text().splitlines()
    assert json.loads(lines[0]) == {"line": 3, "reason": "invalid JSON",
                                    "raw": '{"instruction": "Reset my account, I am <EMAIL>, call me on <PHONE>", "output": "cut'}
    assert lines[1] == "not json <EMAIL>"
    assert json.loads((out / "report.json").read_text())["clusters"][0]["kept_text"].endswith("<EMAIL>, call me on <PHONE>")
    table = pq.read_table(out / "removed.parquet").to_pylist()
    assert [row["note"] for row in table] == ["Reset my account, I am <EMAIL>, call me on <PHONE>"] * 3 and table[2]["line"] == 3
    assert table[0]["messages"][0]["content"] == "Reset my account, I am <EMAIL>, call me on <PHONE>"
    assert (out / "docs" / "index.html").read_text() == (  # secrets only: the link stays whole
        '<a href="https://unpkg.com/table@1.19.1/x.js"><SECRET:HF_TOKEN></a>')
    assert (out / "config.yaml").read_text() == "system_prompt: Reset my account, I am <EMAIL>, call me on <PHONE>\n"
    assert (out / "docs" / "plot.png").read_bytes() == (source / "docs" / "plot.png").read_bytes()


def test_run_tracker_redacts_params_tags_tables_dicts_and_artifacts(tmp_path: Path, home: Home) -> None:
    client = MlflowClient()
    run_id = client.create_run(client.create_experiment("redaction")).info.run_id
    tracker = RunTracker(run_id, client, PiiConfig())
    long_prompt = "x" * (MAX_PARAM_VAL_LENGTH - 10) + TOKEN  # the cut falls inside the token
    tracker.log_params({"tokenize.system_prompt": long_prompt, "contact": ROW})
    tracker.set_tags({"adapterflow.failure": f"can't reach https://me:hunter22@hub.example as {EMAIL}"})
    tracker.log_table(pd.DataFrame({"prompt": [ROW], "candidate": [TOKEN], "score": [1.5]}), "eval/samples.json")
    tracker.log_dict({"kept_text": ROW}, "data/clusters.json")
    quarantine = tmp_path / "quarantine.jsonl"
    quarantine.write_bytes(orjson.dumps({"raw": ROW}) + b"\n")
    tracker.log_artifact(quarantine, "data")

    run = client.get_run(run_id)
    assert run.data.params["tokenize.system_prompt"] == ("x" * (MAX_PARAM_VAL_LENGTH - 10) + "<SECRET:HF_TOKEN>")[
        :MAX_PARAM_VAL_LENGTH]  # redacted, then cut: no part of the token survives
    assert run.data.params["contact"] == "Reset my account, I am <EMAIL>, call me on <PHONE>"
    assert run.data.tags["adapterflow.failure"] == "can't reach https://me:<SECRET:URL_PASSWORD>@hub.example as <EMAIL>"
    assert quarantine.read_text() == orjson.dumps({"raw": ROW}).decode() + "\n"  # the run folder keeps the original
    logged = [Path(client.download_artifacts(run_id, path, str(tmp_path / "down"))).read_text()
              for path in ("eval/samples.json", "data/clusters.json", "data/quarantine.jsonl")]
    assert all("<EMAIL>" in text and EMAIL not in text and "415 555" not in text for text in logged)
    assert "<SECRET:HF_TOKEN>" in logged[0] and TOKEN not in logged[0]


def test_a_failed_flow_runs_pii_settings_come_from_its_config_parameter() -> None:
    from types import SimpleNamespace

    from tasks.track import flow_run_pii

    assert flow_run_pii(SimpleNamespace(parameters={"config": {"data": {"pii": {"action": "report"}}}})).action == "report"
    assert flow_run_pii(SimpleNamespace(parameters={"trained": {}})) is None
