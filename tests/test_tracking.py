"""MLflow naming helpers."""

from __future__ import annotations

from mlflow.utils.validation import MAX_PARAM_VAL_LENGTH

from adapterflow.tracking import eval_metric, flatten_params


def test_flatten_params_uses_dotted_keys_and_truncates() -> None:
    flat = flatten_params({"a": {"b": 1, "c": {"d": [1, 2]}}, "long": "x" * 10_000, "empty": {}})
    assert flat == {"a.b": "1", "a.c.d": "[1, 2]", "long": "x" * MAX_PARAM_VAL_LENGTH, "empty": "{}"}


def test_eval_metric_names() -> None:
    assert eval_metric("candidate", "perplexity") == "eval/candidate/perplexity"
