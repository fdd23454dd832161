"""The run summary as a Prefect markdown artifact: metrics side by side, every promotion reason, secrets redacted."""

from __future__ import annotations

import pytest

from adapterflow.reporting.prefect_artifact import artifact_key, summary_markdown

TOKEN = "hf_Q7bX2mLpR9sT4vW8yZ1aC3dE5fG6hJ0kNq"
SUMMARY = {
    "experiment": "Docs Assistant", "outcome": "trained", "mlflow_run_id": "abc123", "registered_model": "docs",
    "model_version": "3", "promoted": False, "promotion_reason": "candidate perplexity not 1% better than champion v2",
    "promotion_reasons": ["perplexity: 5.1 vs champion 5.0 (FAIL)", "forgetting: +0.02 <= 0.10 (pass)"],
    "metrics": {"candidate": {"perplexity": 5.1, "loss": 1.63, "forgetting": 0.02},
                "base": {"perplexity": 9.0, "loss": 2.2, "forgetting": 0.0},
                "champion": {"perplexity": 5.0, "loss": 1.61, "forgetting": 0.01}},
    "timings": {"train": 61.25, "evaluate": 12.5}, "skipped": ["evaluate"],
}


def test_summary_markdown_shows_the_decision_every_reason_metrics_in_model_order_and_stage_times() -> None:
    markdown = summary_markdown(SUMMARY)
    assert "- promoted: **no**: candidate perplexity not 1% better than champion v2" in markdown
    assert "  - perplexity: 5.1 vs champion 5.0 (FAIL)" in markdown and "  - forgetting: +0.02 <= 0.10 (pass)" in markdown
    assert "| model | perplexity | loss | forgetting |" in markdown
    rows = [line for line in markdown.splitlines() if line.startswith(("| base", "| champion", "| candidate"))]
    assert rows == ["| base | 9 | 2.2 | 0 |", "| champion | 5 | 1.61 | 0.01 |", "| candidate | 5.1 | 1.63 | 0.02 |"]
    assert "| evaluate (cached) | 12.5 |" in markdown and "| train | 61.2 |" in markdown
    assert artifact_key("Docs Assistant") == "adapterflow-summary-docs-assistant"
    data_check = summary_markdown({"experiment": "docs", "mlflow_run_id": "r1", "timings": {"ingest": 1.0}})
    assert data_check.startswith("# docs: data check\n") and "promoted" not in data_check


@pytest.mark.usefixtures("prefect_server")
def test_the_artifact_is_created_in_the_flow_run_with_secrets_redacted(monkeypatch: pytest.MonkeyPatch) -> None:
    from prefect import flow
    from prefect.artifacts import Artifact

    from adapterflow.reporting.prefect_artifact import publish_summary_artifact

    monkeypatch.setenv("HF_TOKEN", TOKEN)

    @flow
    def finishing() -> str:
        return publish_summary_artifact(SUMMARY | {"promotion_reason": f"token {TOKEN} leaked into a reason"})

    published = finishing()
    stored = Artifact.get(artifact_key("Docs Assistant"))
    assert stored is not None and stored.type == "markdown" and stored.data == published
    assert TOKEN not in stored.data and "token <SECRET:HF_TOKEN> leaked into a reason" in stored.data
