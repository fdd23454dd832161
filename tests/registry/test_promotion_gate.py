"""The fooled-gate paths against a real (SQLite) MLflow registry: a champion that was not compared, a champion
that moved between evaluate and promote, and a classifier's first gate."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from adapterflow.core.home import Home
from adapterflow.registry import ChampionRef, register_adapter, set_aliases
from adapterflow.registry.client import alias_version, move_champion_if_unchanged
from adapterflow.storage.records import EvalResult, RegisteredVersion, RunContext, TokenizedData
from adapterflow.storage.store import Storage
from adapterflow.tracking.run import TAG_PROMOTION_REASONS
from schemas.registry import PromotionPolicy
from tasks.evaluate import classifier_baselines, comparable_champion
from tasks.promote import promote
from tests.registry.conftest import save_tiny_lora
from tests.registry.test_registry import tiny_base


@pytest.fixture(scope="module")
def artifact(tmp_path_factory: pytest.TempPathFactory, tiny_model_dir: Path) -> Path:
    """A trained LoRA artifact as training leaves it: weights, tokenizer, manifest."""
    return save_tiny_lora(tiny_model_dir, tmp_path_factory.mktemp("artifact") / "adapter")


@pytest.fixture
def registry(home: Home, artifact: Path, tiny_model_dir: Path) -> tuple[MlflowClient, RunContext]:
    """Model `m` with versions 1-3 (champion v1) and a pipeline run whose data validation passed."""
    client = MlflowClient()
    experiment = client.create_experiment("m", artifact_location=str(home.root / "mlartifacts"))
    for _ in range(3):
        run_id = client.create_run(experiment).info.run_id
        register_adapter(client, run_id, "m", str(artifact), tiny_base(tiny_model_dir), {}, "d")
    set_aliases(client, "m", {"champion": "1", "challenger": "3"})
    run_id = client.create_run(experiment).info.run_id
    client.log_metric(run_id, "data/validation_success", 1.0)
    run = RunContext(run_name="r", run_dir=str(home.root), home=str(home.root), mlflow_run_id=run_id,
                     experiment="m", config_sha256="c", storage=str(home.cache))
    return client, run


def evaluation(candidate: float, champion: str | None = "1", **fields) -> EvalResult:
    metrics = {"base": {"perplexity": 30.0}, "candidate": {"perplexity": candidate}}
    if champion is not None:
        metrics["champion"] = {"perplexity": 10.0}
    return EvalResult(metrics=metrics, champion_version=champion, samples_path=None, **fields)


V3 = RegisteredVersion(model_name="m", version="3", model_uri="models:/m/3")


def reasons(client: MlflowClient, version: str = "3") -> str:
    return client.get_model_version("m", version).tags[TAG_PROMOTION_REASONS]


def test_a_champion_that_was_not_compared_is_not_replaced_unless_the_policy_allows(registry) -> None:
    client, run = registry
    skipped = evaluation(8.0, champion=None, champion_skipped="evaluation.compare_champion is false")

    held = promote.fn(V3, skipped, PromotionPolicy(), run)  # 8.0 beats the base's 30 by far, yet
    assert not held.promoted and held.aliases == {"champion": "1", "challenger": "3"}
    assert "champion v1 was not compared (evaluation.compare_champion is false)" in held.reason
    assert "FAIL champion_compared: champion v1 was not compared" in reasons(client)

    allowed = promote.fn(V3, skipped, PromotionPolicy(allow_without_champion_comparison=True), run)
    assert allowed.promoted and allowed.aliases == {"champion": "3", "previous-champion": "1", "challenger": "3"}
    assert "vs the base model 30" in allowed.reason
    assert "pass champion_compared: champion v1 not compared (evaluation.compare_champion is false); allowed" \
        in reasons(client)


def test_a_champion_that_moved_after_evaluation_is_not_moved_again(registry) -> None:
    client, run = registry
    set_aliases(client, "m", {"champion": "2"})  # e.g. `adapterflow promote m 2` while the run was evaluating
    result = promote.fn(V3, evaluation(8.0), PromotionPolicy(), run)
    assert not result.promoted and "champion v1 was evaluated, but champion is now v2" in result.reason
    assert result.aliases == {"champion": "2", "challenger": "3"}
    logged = client.get_run(run.mlflow_run_id).data
    assert logged.metrics["registry/promoted"] == 0.0
    assert logged.tags["adapterflow.promotion.reasons"] == reasons(client) == "\n".join(result.reasons)


def test_a_champion_moved_between_the_decision_and_the_alias_move_is_caught(registry, monkeypatch) -> None:
    import tasks.promote

    client, run = registry
    decide = tasks.promote.promotion_decision

    def decide_then_someone_moves_champion(*args, **kwargs):
        decision = decide(*args, **kwargs)
        set_aliases(client, "m", {"champion": "2"})
        return decision

    monkeypatch.setattr(tasks.promote, "promotion_decision", decide_then_someone_moves_champion)
    result = promote.fn(V3, evaluation(8.0), PromotionPolicy(), run)
    assert not result.promoted and result.aliases == {"champion": "2", "challenger": "3"}  # v3 stays challenger
    assert "champion was v1 at the decision and v2 right before the move" in result.reason
    assert result.reasons[-1].startswith("FAIL champion_unchanged") and "FAIL champion_unchanged" in reasons(client)
    assert "pass primary perplexity" in reasons(client)  # the comparison itself passed


def test_compare_and_set_moves_only_from_the_expected_champion(registry) -> None:
    client, _ = registry
    assert move_champion_if_unchanged(client, "m", "2", {"champion": "3"}) == (False, "1")
    assert alias_version(client, "m", "champion") == "1"
    assert move_champion_if_unchanged(client, "m", "1", {"champion": "3", "previous-champion": "1"}) == (True, "1")
    assert alias_version(client, "m", "champion") == "3" and alias_version(client, "m", "previous-champion") == "1"
    client.delete_registered_model_alias("m", "champion")
    assert move_champion_if_unchanged(client, "m", "3", {"champion": "2"}) == (False, None)


def tokenized_data(task: str = "sft", label_names: list[str] | None = None, uri: str = "") -> TokenizedData:
    return TokenizedData(key="k", uri=uri, task=task, label_names=label_names or [], train_rows=1, eval_rows=1,
                         dropped={}, stats={}, max_length=64)


def test_a_champion_on_another_base_tokenizer_template_or_label_set_is_not_comparable(
    artifact: Path, tmp_path: Path, tiny_model_dir: Path, home: Home,
) -> None:
    from adapterflow.models.base import load_tokenizer

    base = tiny_base(tiny_model_dir)
    same = ChampionRef("1", str(artifact), base.path, base.sha256)
    assert comparable_champion(same, tokenized_data(), base, artifact) == (same, None)
    assert comparable_champion(None, tokenized_data(), base, artifact) == (None, None)

    other_base = ChampionRef("1", str(artifact), base.path, "f" * 64)
    assert "its base model weights differ" in comparable_champion(other_base, tokenized_data(), base, artifact)[1]

    retemplated = tmp_path / "retemplated"
    shutil.copytree(artifact, retemplated)
    tokenizer = load_tokenizer(artifact)
    tokenizer.chat_template = "{% for m in messages %}{{ m['content'] }}\n{% endfor %}"
    tokenizer.save_pretrained(retemplated)
    champion, why = comparable_champion(ChampionRef("1", str(retemplated), base.path, base.sha256), tokenized_data(),
                                        base, artifact)
    assert champion is None and why == "not comparable: its tokenizer or chat template differs from this run's"

    classifier = tokenized_data("classification", ["no", "yes"])
    assert "it is a sft model (labels []), this run trains classification (labels ['no', 'yes'])" in \
        comparable_champion(same, classifier, base, artifact)[1]


def test_a_classifiers_first_gate_is_the_majority_class_not_a_random_head(registry, tmp_path: Path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    client, run = registry
    storage = Storage.local(tmp_path / "store")
    folder = storage.local_dir("tokenized", "k")
    folder.mkdir(parents=True)
    labels = [[0], [0], [0], [1], [0], [1]]  # always 0: accuracy 4/6, macro-F1 (0.8 + 0) / 2
    pq.write_table(pa.table({"input_ids": [[5, 6]] * len(labels), "labels": labels}), folder / "eval.parquet")
    baselines = classifier_baselines(tokenized_data("classification", ["a", "b"], storage.uri("tokenized", "k")), storage)
    assert baselines == {"majority": {"accuracy": pytest.approx(4 / 6), "macro_f1": pytest.approx(0.4)}}
    assert classifier_baselines(tokenized_data(), storage) == {}

    client.delete_registered_model_alias("m", "champion")  # the first version of a classifier

    def classifier_eval(candidate_f1: float) -> EvalResult:
        metrics = {"base": {"macro_f1": 0.2, "accuracy": 0.3}, "candidate": {"macro_f1": candidate_f1, "accuracy": 0.7}}
        return EvalResult(metrics=metrics, primary_metric="macro_f1", champion_version=None, samples_path=None,
                          baselines=baselines)

    no_better = promote.fn(V3, classifier_eval(0.35), PromotionPolicy(), run)  # beats the random head's 0.2
    assert not no_better.promoted
    assert "candidate macro_f1 0.35 vs the majority-class baseline (always the most frequent eval label) 0.4" \
        in no_better.reason
    better = promote.fn(V3, classifier_eval(0.9), PromotionPolicy(), run)
    assert better.promoted and "vs the majority-class baseline" in better.reason
    assert better.aliases["champion"] == "3"
