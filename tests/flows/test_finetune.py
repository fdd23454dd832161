"""The real flow, end to end, on a tiny random llama model and the test assets."""

from __future__ import annotations

import json
from pathlib import Path

import mlflow
import pytest
import torch
from mlflow.tracking import MlflowClient

from adapterflow.core.errors import DataError, ValidationGateFailed
from adapterflow.core.home import Home
from adapterflow.data.drift import NO_CHAMPION_PROFILE
from adapterflow.reporting.prefect_artifact import summary_markdown
from schemas import load_config
from tests.conftest import ASSETS, tiny_config, write_config

pytestmark = pytest.mark.usefixtures("prefect_server")


def run_flow(config_path: Path, overrides: list[str] | None = None) -> dict:
    from flows.finetune import finetune

    return finetune(load_config(config_path, overrides))


def test_first_run_registers_and_promotes_then_retrain_is_gated(tmp_path: Path, home: Home, tiny_model_dir: Path) -> None:
    config_path = write_config(tmp_path, tiny_config(tiny_model_dir))
    summary = run_flow(config_path)

    data = summary["data"]
    assert data["input_rows"] == 60 and data["quarantined"] == 0
    assert data["validation_rows"] == 4
    assert data["reconciled"] and data["train_rows"] + data["eval_rows"] + data["validation_rows"] \
        + sum(data["dropped"].values()) == 60
    metrics = summary["metrics"]
    assert set(metrics) == {"base", "candidate"}
    assert metrics["candidate"]["perplexity"] < metrics["base"]["perplexity"]
    assert summary["model_version"] == "1" and summary["promoted"] is True
    assert summary["aliases"] == {"challenger": "1", "champion": "1"}
    assert "the base model" in summary["promotion_reason"]

    client = MlflowClient()
    run = client.get_run(summary["mlflow_run_id"])
    assert run.info.status == "FINISHED"
    assert run.data.params["training.learning_rate"] == "0.01"
    assert run.data.params["method.type"] == "lora"
    for key in ("train/loss", "train/tokens_per_second", "eval/base/perplexity", "eval/candidate/perplexity",
                "data/input_rows", "data/train_rows"):
        assert key in run.data.metrics, key
    assert len(client.get_metric_history(run.info.run_id, "train/loss")) >= 3  # one point per logging step
    assert run.data.tags["adapterflow.dataset_fingerprint"] == summary["dataset_fingerprint"]
    assert run.data.tags["prefect.flow_run_id"]
    artifacts = {item.path for item in client.list_artifacts(run.info.run_id)}
    assert {"config", "data", "validation", "model", "eval", "summary.json"} <= artifacts
    validation = {item.path for item in client.list_artifacts(run.info.run_id, "validation")}
    assert {"validation/validation.json", "validation/token_checks.json", "validation/data_docs"} <= validation
    data_artifacts = {item.path for item in client.list_artifacts(run.info.run_id, "data")}
    assert {"data/report.json", "data/lengths.png", "data/quarantine.jsonl", "data/removed_duplicates.parquet",
            "data/profile.json", "data/drift.json", "data/drift.md"} <= data_artifacts
    assert summary["drift"]["note"] == NO_CHAMPION_PROFILE  # the first run: no champion to compare with
    assert set(data["pii"]) == {"action", "rows", "by_type"} and "near_duplicates" in data and "leaked_eval_rows" in data
    assert data["eval_rows_after_leakage"] == data["stages"]["split_eval"] == run.data.metrics["data/eval_rows_after_leakage"]
    assert [d.dataset.name for d in run.inputs.dataset_inputs] == ["train", "eval", "validation"]
    assert len(client.get_metric_history(run.info.run_id, "val/loss")) >= 2  # eval_steps auto, and the last step
    assert "train/kept_step" in run.data.metrics

    version = client.get_model_version("tiny-assistant", "1")
    assert version.tags["adapterflow.method"] == "lora"
    assert version.tags["adapterflow.base_model_sha256"] and version.tags["adapterflow.config_sha256"]
    model_files = {item.path for item in client.list_artifacts(run.info.run_id, "model/artifacts/adapter")}
    assert "model/artifacts/adapter/adapter_model.safetensors" in model_files
    assert not any(path.endswith("model.safetensors") and "adapter" not in Path(path).name for path in model_files)

    unchanged = run_flow(config_path)
    assert unchanged["outcome"] == "skipped: unchanged" and unchanged["model_version"] is None
    assert unchanged["aliases"] == {"challenger": "1", "champion": "1"}
    assert client.get_run(unchanged["mlflow_run_id"]).data.tags["adapterflow.skipped"] == "unchanged"
    assert [str(v.version) for v in client.search_model_versions("name='tiny-assistant'")] == ["1"]

    second = run_flow(config_path, ["execution.skip_unchanged=false"])  # same data and config: same adapter
    assert second["model_version"] == "1" and second["identical_to_existing"] is True  # reported, not registered
    assert second["promoted"] is False and "identical to v1" in second["promotion_reason"]
    assert second["aliases"] == {"challenger": "1", "champion": "1"}
    assert {"tokenize", "train"} <= set(second["skipped"])
    assert second["metrics"]["champion"] == second["metrics"]["candidate"]
    drift = second["drift"]  # the same rows as champion v1's: nothing changed
    assert drift["compared_with"] == "champion v1" and drift["eval_set"]["same"]
    assert (drift["rows"]["added"], drift["rows"]["removed"], drift["rows"]["changed"]) == (0, 0, 0)
    assert drift["rows"]["after"] == second["data"]["stages"]["split_train"]
    assert set(drift["scores"].values()) == {0.0}
    assert "## What changed since the champion" in summary_markdown(second)
    assert client.get_run(second["mlflow_run_id"]).data.metrics["drift/vocabulary"] == 0.0
    assert "not promoted" not in client.get_model_version("tiny-assistant", "1").tags["adapterflow.promotion"]

    warm = run_flow(config_path, ["training.warm_start=champion"])  # continues from champion v1's adapter
    assert warm["model_version"] == "2" and "train" not in warm["skipped"]
    eval_sets = {client.get_model_version("tiny-assistant", v).tags["adapterflow.eval_set"] for v in ("1", "2")}
    assert eval_sets == {run.data.tags["adapterflow.eval_set"]}  # the first run's frozen eval set, on every version
    assert client.get_run(warm["mlflow_run_id"]).data.tags["adapterflow.warm_start_from"] == "models:/tiny-assistant/1"


def test_champion_loads_from_registry_with_the_trained_adapters_outputs(
    tmp_path: Path, home: Home, tiny_model_dir: Path
) -> None:
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    summary = run_flow(write_config(tmp_path, tiny_config(tiny_model_dir)))
    loaded = mlflow.pyfunc.load_model("models:/tiny-assistant@champion").unwrap_python_model()

    adapter_dir = next((home.cache / "adapters").iterdir()) / "adapter"
    reference = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(tiny_model_dir), adapter_dir).eval()
    base = AutoModelForCausalLM.from_pretrained(tiny_model_dir).eval()
    ids = torch.tensor([[5, 17, 42, 99, 3, 250]])
    with torch.no_grad():
        registered_logits = loaded.model(input_ids=ids).logits
        trained_logits = reference(input_ids=ids).logits
        base_logits = base(input_ids=ids).logits
    assert torch.equal(registered_logits, trained_logits)
    assert not torch.allclose(registered_logits, base_logits)  # the adapter really changes the model
    answers = loaded.predict(None, __import__("pandas").DataFrame({"prompt": ["What does `len` do?"]}),
                             params={"max_new_tokens": 4})
    assert list(answers.columns) == ["answer"] and len(answers) == 1
    assert summary["model_uri"] == "models:/tiny-assistant/1"


def test_malformed_rows_are_quarantined_with_line_and_reason(tmp_path: Path, home: Home, tiny_model_dir: Path) -> None:
    config = tiny_config(tiny_model_dir, sources=[{"path": str(ASSETS / "malformed.jsonl")}],
                         data={"max_quarantine_share": 0.2, "validation": {"min_rows": 5}})
    summary = run_flow(write_config(tmp_path, config))

    data = summary["data"]
    assert data["input_rows"] == 36
    assert data["quarantined"] == 5 and data["duplicates"] == 1
    assert data["quarantine_reasons"] == {
        "invalid_json": 1, "empty_line": 1, "missing_field": 1, "wrong_type": 1, "not_an_object": 1,
    }
    assert data["reconciled"]
    assert data["input_rows"] == data["quarantined"] + sum(data["dropped"].values()) + data["train_rows"] \
        + data["eval_rows"] + data["validation_rows"]
    quarantined = [json.loads(line) for line in Path(data["quarantine_file"]).read_bytes().split(b"\n") if line]
    assert [(row["line"], row["category"]) for row in quarantined] == [
        (4, "invalid_json"), (8, "empty_line"), (13, "missing_field"), (21, "wrong_type"), (26, "not_an_object"),
    ]
    assert "missing field 'output'" in quarantined[2]["reason"]
    assert quarantined[0]["raw"].startswith('{"instruction": "truncated"')


def test_too_many_malformed_rows_stop_the_run(tmp_path: Path, home: Home, tiny_model_dir: Path) -> None:
    config = tiny_config(tiny_model_dir, sources=[{"path": str(ASSETS / "malformed.jsonl")}],
                         data={"max_quarantine_share": 0.05})
    with pytest.raises(DataError, match="malformed"):
        run_flow(write_config(tmp_path, config))
    run = MlflowClient().search_runs([MlflowClient().get_experiment_by_name("tiny-assistant").experiment_id])[0]
    assert run.info.status == "FAILED"


def test_failing_validation_suite_stops_before_training(tmp_path: Path, home: Home, tiny_model_dir: Path) -> None:
    config = tiny_config(tiny_model_dir, data={"validation": {"min_rows": 1000}})
    with pytest.raises(ValidationGateFailed, match="expect_table_row_count_to_be_between"):
        run_flow(write_config(tmp_path, config))

    client = MlflowClient()
    run = client.search_runs([client.get_experiment_by_name("tiny-assistant").experiment_id])[0]
    assert run.info.status == "FAILED"
    assert "validation failed" in run.data.tags["adapterflow.failure"]
    assert "validation/validation.json" in {a.path for a in client.list_artifacts(run.info.run_id, "validation")}
    assert not (home.cache / "adapters").exists()  # no training happened
    assert client.search_registered_models() == []


def test_data_check_reports_pii_near_duplicates_and_validation_without_training(
    tmp_path: Path, home: Home, tiny_model_dir: Path
) -> None:
    from typer.testing import CliRunner

    from adapterflow.cli.main import app

    config = tiny_config(tiny_model_dir, sources=[{"path": str(ASSETS / "pii_and_duplicates.jsonl")}],
                         data={"dedup": {"near": {"threshold": 0.7}}, "validation": {"min_rows": 10}})
    summary_path = tmp_path / "summary.json"
    result = CliRunner().invoke(app, ["data", "check", str(write_config(tmp_path, config)), "--summary-json", str(summary_path)])
    assert result.exit_code == 0, result.output
    data = json.loads(summary_path.read_text())["data"]
    assert data["input_rows"] == 30 and data["near_duplicates"] == 2
    assert data["pii"] == {"action": "redact", "rows": 3, "by_type": {"email": 1, "ip_address": 1, "phone": 1}}
    assert data["reconciled"]
    assert "near duplicates removed" in result.output and "personal data (redact)" in result.output
    client = MlflowClient()
    run = client.get_run(json.loads(summary_path.read_text())["mlflow_run_id"])
    assert run.data.tags["adapterflow.kind"] == "data-check" and run.info.status == "FINISHED"
    assert {"data/report.json", "data/lengths.png"} <= {a.path for a in client.list_artifacts(run.info.run_id, "data")}
    assert client.search_registered_models() == [] and not (home.cache / "adapters").exists()
