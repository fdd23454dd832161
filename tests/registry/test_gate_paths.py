"""One gate, two paths: the pipeline's promote stage (tasks/promote.py, from the EvalResult) and `adapterflow promote`
(registry/versions.py, from what the runs logged) build the gate's inputs with the same function and reach the same
checks on the same cases, against a real (SQLite) MLflow registry."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
from mlflow.tracking import MlflowClient

from adapterflow.core.home import Home
from adapterflow.registry import ChampionRef, register_adapter, set_aliases
from adapterflow.registry.versions import promotion_verdict
from adapterflow.storage.records import EvalResult, RegisteredVersion, RunContext
from adapterflow.tracking.run import PER_EXAMPLE_ARTIFACT, TAG_BASE_MODEL_SHA, eval_metric
from schemas.registry import PromotionPolicy
from tasks.evaluate import comparable_champion
from tasks.promote import promote
from tests.registry.conftest import save_tiny_lora
from tests.registry.test_promotion_gate import tokenized_data
from tests.registry.test_registry import tiny_base

EVAL_SET = "e" * 64
POLICY = "name: m\nregistry:\n  promotion:\n    min_improvement: 0.0\n"


@pytest.fixture(scope="module")
def artifact(tmp_path_factory: pytest.TempPathFactory, tiny_model_dir: Path) -> Path:
    return save_tiny_lora(tiny_model_dir, tmp_path_factory.mktemp("artifact") / "adapter")


def lm(nll: np.ndarray, tokens: np.ndarray) -> tuple[dict[str, float], dict[str, list[float]]]:
    loss = float(nll.sum() / tokens.sum())
    return {"loss": loss, "perplexity": math.exp(loss)}, {"nll": nll.tolist(), "tokens": tokens.tolist()}


def scores(better: float, noise: float, seed: int = 1) -> dict[str, tuple]:
    """Base, champion and candidate on the same 50 examples; the candidate's perplexity `better` below the
    champion's."""
    rng = np.random.default_rng(seed)
    tokens = rng.integers(5, 40, 50).astype(float)
    champion = tokens * rng.gamma(4.0, 0.6, 50)
    candidate = champion + tokens * rng.normal(0, noise, 50)
    candidate += tokens * (champion.sum() / tokens.sum() + math.log(1 - better) - candidate.sum() / tokens.sum())
    return {"base": lm(champion * 1.5, tokens), "champion": lm(champion, tokens), "candidate": lm(candidate, tokens)}


def log_run(client: MlflowClient, experiment: str, models: dict[str, tuple], with_examples: bool = True) -> str:
    """A pipeline run as evaluate leaves it: eval/<model>/<metric>, the per-example artifact, the config."""
    run_id = client.create_run(experiment).info.run_id
    for model, (metrics, _) in models.items():
        for metric, value in metrics.items():
            client.log_metric(run_id, eval_metric(model, metric), value)
    if with_examples:
        client.log_dict(run_id, {model: values for model, (_, values) in models.items()}, PER_EXAMPLE_ARTIFACT)
    client.log_text(run_id, POLICY, "config/config.yaml")
    return run_id


def failed(reasons: list[str]) -> list[str]:
    return [line.split(":")[0] for line in reasons if line.startswith("FAIL")]


CASES = {  # name: (candidate better by, noise, champion perplexity, per-example values of the champion, promoted)
    "a 1% gain in noise": (0.01, 0.5, None, True, False),
    "a clear gain": (0.25, 0.2, None, True, True),
    "a diverged champion": (0.0, 0.2, math.nan, True, True),
    "an older champion run": (0.25, 0.2, None, False, True),
}


@pytest.mark.parametrize("case", CASES)
def test_the_pipeline_and_the_cli_reach_the_same_checks(
    case: str, home: Home, artifact: Path, tiny_model_dir: Path,
) -> None:
    better, noise, champion_perplexity, champion_examples, promoted = CASES[case]
    models = scores(better, noise)
    if champion_perplexity is not None:
        models["champion"][0]["perplexity"] = champion_perplexity
    client = MlflowClient()
    experiment = client.create_experiment("m", artifact_location=str(home.root / "mlartifacts"))
    base = tiny_base(tiny_model_dir)
    tags = {"adapterflow.eval_set": EVAL_SET, TAG_BASE_MODEL_SHA: base.sha256}
    champion_run = log_run(client, experiment, {"candidate": models["champion"]}, with_examples=champion_examples)
    register_adapter(client, champion_run, "m", str(artifact), base, tags, "d")
    run_id = log_run(client, experiment, models)
    register_adapter(client, run_id, "m", str(artifact), base, tags, "d")
    set_aliases(client, "m", {"champion": "1"})

    cli = promotion_verdict(client, "m", client.get_model_version("m", "2")).decision

    per_example = {model: values for model, (_, values) in models.items()}
    if not champion_examples:
        del per_example["champion"]
    evaluation = EvalResult(metrics={model: metrics for model, (metrics, _) in models.items()},
                            per_example=per_example, champion_version="1", samples_path=None)
    run = RunContext(run_name="r", run_dir=str(home.root), home=str(home.root), mlflow_run_id=run_id,
                     experiment="m", config_sha256="c", storage=str(home.cache))
    pipeline = promote.fn(RegisteredVersion(model_name="m", version="2", model_uri="models:/m/2"), evaluation,
                          PromotionPolicy(min_improvement=0.0), run)

    assert cli.reasons == pipeline.reasons, (cli.reasons, pipeline.reasons)
    assert cli.promote == pipeline.promoted == promoted, pipeline.reason
    primary = next(line for line in pipeline.reasons if "primary" in line)
    if champion_perplexity is not None:
        assert "champion v1 perplexity is nan: any finite candidate replaces it" in primary
    elif champion_examples:
        assert "95% lower bound" in primary and "on 50 examples" in primary
    else:
        assert "(point comparison: no per-example perplexity values for champion v1" in primary


def test_a_champion_on_other_base_weights_is_not_compared_on_either_path(
    home: Home, artifact: Path, tiny_model_dir: Path,
) -> None:
    models = scores(0.25, 0.2)
    client = MlflowClient()
    experiment = client.create_experiment("m", artifact_location=str(home.root / "mlartifacts"))
    base = tiny_base(tiny_model_dir)
    champion_run = log_run(client, experiment, {"candidate": models["champion"]})
    register_adapter(client, champion_run, "m", str(artifact), base,
                     {"adapterflow.eval_set": EVAL_SET, TAG_BASE_MODEL_SHA: "f" * 64}, "d")
    run_id = log_run(client, experiment, {"base": models["base"], "candidate": models["candidate"]})
    register_adapter(client, run_id, "m", str(artifact), base,
                     {"adapterflow.eval_set": EVAL_SET, TAG_BASE_MODEL_SHA: base.sha256}, "d")
    set_aliases(client, "m", {"champion": "1"})

    cli = promotion_verdict(client, "m", client.get_model_version("m", "2")).decision
    assert not cli.promote
    assert "champion v1 was not compared (another base model weights: " in cli.reason

    other_base = ChampionRef("1", str(artifact), base.path, "f" * 64)
    _, skipped = comparable_champion(other_base, tokenized_data(), base, artifact)
    evaluation = EvalResult(metrics={"base": models["base"][0], "candidate": models["candidate"][0]},
                            per_example={"base": models["base"][1], "candidate": models["candidate"][1]},
                            champion_version=None, champion_skipped=skipped, samples_path=None)
    run = RunContext(run_name="r", run_dir=str(home.root), home=str(home.root), mlflow_run_id=run_id,
                     experiment="m", config_sha256="c", storage=str(home.cache))
    pipeline = promote.fn(RegisteredVersion(model_name="m", version="2", model_uri="models:/m/2"), evaluation,
                          PromotionPolicy(min_improvement=0.0), run)
    assert not pipeline.promoted and "its base model weights differ" in pipeline.reason
    assert failed(cli.reasons) == failed(pipeline.reasons) == ["FAIL champion_compared"]
    assert [line for line in cli.reasons if "primary" in line] == [line for line in pipeline.reasons
                                                                   if "primary" in line]

