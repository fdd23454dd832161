"""Reading the promotion policy a version's run was configured with: its logged config first, an older run's params
as a fallback, never the default in their place (a real SQLite MLflow store, no registered model needed)."""

from __future__ import annotations

from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from adapterflow.core.home import Home
from adapterflow.registry.versions import PolicyUnreadable, run_policy
from tests.tiny_model import tiny_config


def policy_of(client: MlflowClient, run_id: str):
    return run_policy(client, client.get_run(run_id), "m version 1")


def test_a_policy_longer_than_a_param_is_read_whole_from_the_config_open_run_logged(home: Home, tiny_model_dir: Path) -> None:
    from mlflow.utils.validation import MAX_PARAM_VAL_LENGTH

    from schemas.pipeline import PipelineConfig
    from tasks.track import open_run

    guards = [{"metric": f"forgetting/suite_{index}/loss", "max_regression": 0.02} for index in range(80)]
    promotion = {"min_improvement": 0.5, "threshold": 3.0, "guards": guards, "required_checks": ["finite_metrics"]}
    config = PipelineConfig.model_validate(tiny_config(tiny_model_dir, registry={"promotion": promotion}))
    client = MlflowClient()
    run = open_run(config, home, "flow-run-1", client=client)
    logged = client.get_run(run.mlflow_run_id).data.params["registry.promotion.guards"]
    assert len(logged) == MAX_PARAM_VAL_LENGTH  # cut: the params alone no longer hold the policy
    assert policy_of(client, run.mlflow_run_id) == config.registry.promotion


@pytest.fixture
def new_run(home: Home):
    """A run with the given params and, when `config` is given, that text as its config/config.yaml artifact."""
    client = MlflowClient()
    experiment = client.create_experiment("m", artifact_location=str(home.root / "mlartifacts"))

    def make(params: dict[str, str], config: str | None = None) -> str:
        run_id = client.create_run(experiment).info.run_id
        for key, value in params.items():
            client.log_param(run_id, key, value)
        if config is not None:
            client.log_text(run_id, config, "config/config.yaml")
        return run_id

    return make


OLD_PARAMS = {"registry.promotion.min_improvement": "0.05", "registry.promotion.threshold": "None",
              "registry.promotion.guards": "[{'metric': 'loss', 'max_regression': 0.1}]"}


def test_the_config_artifact_wins_and_runs_from_before_it_fall_back_to_their_params(new_run) -> None:
    client = MlflowClient()
    both = new_run(OLD_PARAMS, "name: m\nregistry:\n  promotion:\n    min_improvement: 0.5\n")
    assert policy_of(client, both).min_improvement == 0.5 and policy_of(client, both).guards == []
    old = policy_of(client, new_run(OLD_PARAMS))
    assert (old.min_improvement, old.threshold, [g.metric for g in old.guards]) == (0.05, None, ["loss"])


@pytest.mark.parametrize(("params", "config", "message"), [
    ({}, None, ("m version 1: its MLflow run {run} logged no readable promotion policy: neither config/config.yaml "
                "nor registry.promotion.* params")),
    ({"registry.promotion.direction": "sideways"}, None, (
        "m version 1: the promotion policy its MLflow run {run} logged as registry.promotion.* params is not valid: "
        "registry.promotion.direction: Input should be 'auto', 'lower' or 'higher' (got 'sideways')")),
    # a cut or section-less artifact: the run's valid params don't stand in for the config it logged
    (OLD_PARAMS, "name: m\nregistry: {model_name: x\n", "config/config.yaml holds no readable registry.promotion"),
    (OLD_PARAMS, "name: m\n", "config/config.yaml holds no readable registry.promotion"),
    ({}, "registry:\n  promotion:\n    min_improvement: 0.5\n    typo: 1\n",
     "registry.promotion.typo: Extra inputs are not permitted (got '1')"),
])
def test_a_policy_that_cant_be_read_is_an_error_never_the_default(new_run, params, config, message) -> None:
    run = new_run(params, config)
    with pytest.raises(PolicyUnreadable) as raised:
        policy_of(MlflowClient(), run)
    assert message.format(run=run) in raised.value.message
    assert raised.value.exit_code == 2 and "--force --reason" in raised.value.hint
