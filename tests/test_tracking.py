"""MLflow naming helpers, the experiment kind tag and system metrics."""

from __future__ import annotations

from mlflow.utils.validation import MAX_PARAM_VAL_LENGTH

from adapterflow.tracking.run import eval_metric, flatten_params


def test_flatten_params_uses_dotted_keys_and_truncates() -> None:
    flat = flatten_params({"a": {"b": 1, "c": {"d": [1, 2]}}, "long": "x" * 10_000, "empty": {}})
    assert flat == {"a.b": "1", "a.c.d": "[1, 2]", "long": "x" * MAX_PARAM_VAL_LENGTH, "empty": "{}"}


def test_eval_metric_names() -> None:
    assert eval_metric("candidate", "perplexity") == "eval/candidate/perplexity"


def test_experiments_open_in_the_model_training_view(home) -> None:
    from mlflow.tracking import MlflowClient

    from adapterflow.tracking.run import EXPERIMENT_KIND_TAG, ensure_experiment

    client = MlflowClient()
    created = ensure_experiment(client, "new-model", home)
    assert client.get_experiment(created).tags[EXPERIMENT_KIND_TAG] == "custom_model_development"
    older = client.create_experiment("made-before-the-tag")  # what MLflow would show in its GenAI view
    assert ensure_experiment(client, "made-before-the-tag", home) == older
    assert client.get_experiment(older).tags[EXPERIMENT_KIND_TAG] == "custom_model_development"
    client.set_experiment_tag(older, EXPERIMENT_KIND_TAG, "genai_development")  # a user's own choice stays
    ensure_experiment(client, "made-before-the-tag", home)
    assert client.get_experiment(older).tags[EXPERIMENT_KIND_TAG] == "genai_development"


def test_system_metrics_are_logged_into_the_run_while_the_block_runs(home) -> None:
    import time

    from mlflow.tracking import MlflowClient

    from adapterflow.tracking.run import system_metrics

    client = MlflowClient()
    run_id = client.create_run(client.create_experiment("system")).info.run_id
    with system_metrics(run_id, interval_s=0.2):
        time.sleep(1.0)
    logged = client.get_run(run_id).data.metrics
    assert {"system/cpu_utilization_percentage", "system/system_memory_usage_megabytes"} <= set(logged)
    steps = len(client.get_metric_history(run_id, "system/cpu_utilization_percentage"))
    time.sleep(0.5)  # stopped with the block: nothing more arrives
    assert len(client.get_metric_history(run_id, "system/cpu_utilization_percentage")) == steps >= 1
