"""Registry commands through the CLI against a real (SQLite) MLflow registry with tiny registered adapters."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient
from typer.testing import CliRunner

from adapterflow.cli.main import app
from adapterflow.core.home import Home
from adapterflow.registry import register_adapter
from adapterflow.registry.client import current_user
from adapterflow.registry.history import TAG_CHAMPION_HISTORY
from tests.registry.conftest import save_tiny_lora
from tests.registry.test_registry import tiny_base

runner = CliRunner()
SYSTEM_PROMPT = "You answer questions about the claims desk."


@pytest.fixture(scope="module")
def artifact(tmp_path_factory: pytest.TempPathFactory, tiny_model_dir: Path) -> Path:
    """A trained LoRA artifact as training leaves it (weights, tokenizer, manifest), with a recorded system prompt."""
    from adapterflow.methods.artifacts import stage_with_prompting

    folder = tmp_path_factory.mktemp("artifact")
    return stage_with_prompting(save_tiny_lora(tiny_model_dir, folder / "trained"), folder / "adapter", SYSTEM_PROMPT)


@pytest.fixture
def add_version(home: Home, artifact: Path, tiny_model_dir: Path):
    """Register a version of model `m` whose run logged candidate perplexity `ppl` (base 30)."""
    client = MlflowClient()
    experiment = client.create_experiment("m", artifact_location=str(home.root / "mlartifacts"))

    def add(ppl: float, eval_set: str = "e" * 64) -> str:
        run_id = client.create_run(experiment).info.run_id
        for key, value in {"eval/base/perplexity": 30.0, "eval/candidate/perplexity": ppl,
                           "eval/candidate/loss": 2.0, "data/validation_success": 1.0}.items():
            client.log_metric(run_id, key, value)
        client.log_param(run_id, "registry.promotion.min_improvement", "0.05")
        tags = {"adapterflow.method": "lora", "adapterflow.dataset_fingerprint": "f" * 64,
                "adapterflow.base_model": "tiny", "adapterflow.eval_set": eval_set}
        return register_adapter(client, run_id, "m", str(artifact), tiny_base(tiny_model_dir), tags, "d")[0]

    return add


def invoke(*args: str):
    result = runner.invoke(app, list(args))
    assert "Traceback" not in result.output, result.output
    return result


def version_lines(output: str) -> dict[str, str]:
    """`models list`'s rows by version: a version's line starts with its number."""
    return {line.split()[0]: line for line in output.splitlines() if line[:1].isdigit()}


def invoke_json(*args: str, exit_code: int = 0) -> dict:
    """A command's --json document: stdout holds it and nothing else."""
    result = invoke(*args, "--json")
    assert result.exit_code == exit_code, result.output
    return json.loads(result.stdout)


def aliases() -> dict[str, str]:
    return {alias: str(version) for alias, version in MlflowClient().get_registered_model("m").aliases.items()}


def test_models_list_shows_versions_aliases_metrics_and_lineage(add_version) -> None:
    add_version(12.0), add_version(11.0)
    assert invoke("promote", "m", "1").exit_code == 0  # 12 vs base 30
    result = invoke("models", "list", "m", "--wide")
    assert result.exit_code == 0, result.output
    rows = version_lines(result.output)
    assert "champion" in rows["1"] and "12.0000" in rows["1"] and "lora" in rows["1"]
    assert "f" * 12 in rows["1"] and "e" * 12 in rows["1"]  # dataset fingerprint and eval set, shortened
    assert "11.0000" in rows["2"] and "champion" not in rows["2"]
    unknown = invoke("models", "list", "nope")
    assert unknown.exit_code == 2 and "no registered model 'nope'" in unknown.output


def test_models_list_fits_80_columns_one_line_per_version_and_wide_adds_the_lineage(add_version, monkeypatch) -> None:
    monkeypatch.setenv("COLUMNS", "80")
    add_version(12.0), add_version(11.0)
    assert invoke("promote", "m", "1").exit_code == 0
    for alias in ("challenger", "previous-champion"):  # the longest aliases one version carries
        MlflowClient().set_registered_model_alias("m", alias, "2")
    listed = invoke("models", "list", "m")
    assert listed.exit_code == 0, listed.output
    lines, rows = listed.output.splitlines(), version_lines(listed.output)
    assert all(len(line) <= 80 for line in lines), listed.output
    assert rows["1"].split()[:2] == ["1", "champion"] and "challenger, previous-champion" in rows["2"]
    assert all(line[:1].isdigit() for line in lines if "champion" in line)  # `grep champion` finds versions' lines
    header = next(line for line in lines if line.startswith("version"))
    assert header.split() == ["version", "aliases", "age", "method", "perplexity", "loss"]
    assert "ffffffffffff" not in listed.output  # the lineage only with --wide
    wide = version_lines(invoke("models", "list", "m", "--wide").output)  # wider than 80: still a line per version
    assert sorted(wide) == ["1", "2"] and all(line.split()[-3:] == ["tiny", "f" * 12, "e" * 12] for line in wide.values())


def test_models_show_by_alias_or_version_and_clear_usage_errors(add_version) -> None:
    add_version(12.0)
    invoke("promote", "m", "1")
    shown = invoke("models", "show", "m@champion")
    assert shown.exit_code == 0, shown.output
    for text in ("version 1", "champion", "12.0000", "adapterflow.dataset_fingerprint", "adapterflow.promotion",
                 "promoted: candidate perplexity 12"):
        assert text in shown.output, text
    assert invoke("models", "show", "models:/m/1").exit_code == 0
    for reference, message in (("m@nobody", "m has no alias 'nobody'; its aliases: champion (v1)"),
                               ("m/7", "m has no version 7"), ("x/1", "no registered model 'x'"),
                               ("m", "'m' names no model version")):
        result = invoke("models", "show", reference)
        assert result.exit_code == 2 and message in result.output, (reference, result.output)


def test_promote_follows_the_gate_and_force_records_who_and_why(add_version) -> None:
    add_version(10.0), add_version(9.8), add_version(8.0)
    assert invoke("promote", "m", "1").exit_code == 0
    refused = invoke("promote", "m", "2")  # 2% better, the run's policy asks for 5%
    assert refused.exit_code == 1 and "NOT PROMOTED: candidate" in refused.output and "champion v1" in refused.output
    assert aliases()["champion"] == "1"
    no_reason = invoke("promote", "m", "2", "--force")
    assert no_reason.exit_code == 2 and "--force needs --reason" in no_reason.output
    forced = invoke("promote", "m", "2", "--force", "--reason", "hotfix for ticket 42")
    assert forced.exit_code == 0 and "forced by" in forced.output
    assert aliases() == {"champion": "2", "previous-champion": "1"}
    tags = MlflowClient().get_model_version("m", "2").tags
    assert tags["adapterflow.forced_by"] == current_user() and tags["adapterflow.forced_reason"] == "hotfix for ticket 42"
    assert tags["adapterflow.promotion"].startswith(f"forced by {current_user()}: hotfix for ticket 42")
    won = invoke("promote", "m", "3")  # 8.0 vs champion v2's 9.8
    assert won.exit_code == 0 and "PROMOTED" in won.output and aliases()["champion"] == "3"
    assert "pass primary perplexity: candidate perplexity 8 vs champion v2 9.8" in won.output
    elsewhere = add_version(1.0, eval_set="d" * 64)  # far better, but measured on other examples
    unfair = invoke("promote", "m", elsewhere)
    assert unfair.exit_code == 1 and "another eval set: dddddddddddd vs the champion's eeeeeeeeeeee" in unfair.output
    assert invoke("promote", "m", "9").exit_code == 2


def test_list_show_promote_and_rollback_print_their_documented_json(add_version, monkeypatch) -> None:
    monkeypatch.setenv("RELEASE_TOKEN", "s3cr3t-value")
    add_version(12.0), add_version(11.9)
    listing = invoke_json("models", "list", "m")
    assert list(listing) == ["name", "versions"] and [v["version"] for v in listing["versions"]] == ["2", "1"]
    first = listing["versions"][1]
    assert list(first) == ["version", "aliases", "created", "method", "metrics", "lineage"]
    assert first["aliases"] == [] and first["method"] == "lora" and first["created"].endswith("+00:00")
    assert first["metrics"] == {"perplexity": 12.0, "loss": 2.0}
    assert first["lineage"] == {"base_model": "tiny", "dataset_fingerprint": "f" * 64, "eval_set": "e" * 64}

    promoted = invoke_json("promote", "m", "1")
    assert list(promoted) == ["name", "version", "promoted", "forced", "forced_by", "reason", "checks",
                              "champion_before", "aliases"]
    assert (promoted["version"], promoted["promoted"], promoted["forced"], promoted["champion_before"]) == \
        ("1", True, False, None)
    assert promoted["reason"].startswith("promoted: candidate perplexity 12") and promoted["aliases"] == {"champion": "1"}
    assert all(list(check) == ["name", "passed", "detail"] for check in promoted["checks"])
    assert {"name": "primary perplexity", "passed": True} in [{k: c[k] for k in ("name", "passed")} for c in promoted["checks"]]
    assert invoke_json("promote", "m", "1")["reason"] == "version 1 is already champion"

    refused = invoke_json("promote", "m", "2", exit_code=1)  # 0.8% better, the policy asks for 5%
    assert (refused["promoted"], refused["champion_before"], refused["aliases"]) == (False, "1", {"champion": "1"})
    assert refused["reason"].startswith("not promoted: ") and not all(check["passed"] for check in refused["checks"])
    forced = invoke_json("promote", "m", "2", "--force", "--reason", "release s3cr3t-value")
    assert (forced["promoted"], forced["forced"], forced["forced_by"]) == (True, True, current_user())
    assert forced["reason"].startswith(f"forced by {current_user()}: release <SECRET:RELEASE_TOKEN>")
    assert forced["aliases"] == {"champion": "2", "previous-champion": "1"}

    shown = invoke_json("models", "show", "m@champion")
    assert list(shown) == ["name", "version", "aliases", "created", "method", "metrics", "lineage", "run_id", "source",
                           "tags"]
    assert (shown["name"], shown["version"], shown["aliases"]) == ("m", "2", ["champion"])
    assert shown["metrics"] == {"base": {"perplexity": 30.0}, "candidate": {"perplexity": 11.9, "loss": 2.0}}
    assert shown["tags"]["adapterflow.forced_reason"] == "release <SECRET:RELEASE_TOKEN>"  # scrubbed, as logs are
    assert "s3cr3t-value" not in json.dumps(shown) and shown["run_id"] and shown["source"]

    rolled = invoke_json("rollback", "m")
    assert rolled == {"name": "m", "champion": "1", "previous_champion": None, "rolled_back_from": "2",
                      "aliases": {"champion": "1"}}
    usage = invoke("models", "show", "m/7", "--json")
    assert usage.exit_code == 2 and usage.stdout == "" and "m has no version 7" in usage.stderr


def test_rollback_walks_back_through_the_champion_history(add_version) -> None:
    for ppl in (10.0, 9.0, 8.0):
        version = add_version(ppl)
        assert invoke("promote", "m", version).exit_code == 0
    history = json.loads(MlflowClient().get_registered_model("m").tags[TAG_CHAMPION_HISTORY])
    assert [entry["version"] for entry in history] == ["1", "2", "3"] and history[0]["by"] == current_user()
    assert history[0]["at"].endswith("+00:00") and history[0]["reason"].startswith("promoted: candidate perplexity 10")
    first = invoke("rollback", "m")
    assert first.exit_code == 0 and "champion v3 -> v2" in first.output
    assert aliases() == {"champion": "2", "previous-champion": "1"}
    assert invoke("rollback", "m").exit_code == 0
    assert aliases() == {"champion": "1"}
    last = invoke("rollback", "m")
    assert last.exit_code == 2 and "nothing to roll back to" in last.output and aliases()["champion"] == "1"
    assert "champion back to v2" in MlflowClient().get_model_version("m", "3").tags["adapterflow.rolled_back"]


def test_generate_loads_the_version_as_served_with_its_system_prompt(add_version, monkeypatch) -> None:
    import adapterflow.evaluation.metrics

    add_version(12.0)
    invoke("promote", "m", "1")
    seen: list = []
    real = adapterflow.evaluation.metrics.generate_answers

    def spy(model, tokenizer, conversations, *args):
        seen.append(tokenizer.apply_chat_template(conversations, tokenize=False, add_generation_prompt=True))
        return real(model, tokenizer, conversations, *args)

    monkeypatch.setattr(adapterflow.evaluation.metrics, "generate_answers", spy)
    result = invoke("generate", "models:/m@champion", "What is a claim?", "--max-new-tokens", "3")
    assert result.exit_code == 0, result.output
    rendered = seen[0][0]
    assert rendered.startswith(f"<|im_start|>system\n{SYSTEM_PROMPT}<|im_end|>") and "What is a claim?" in rendered
    assert result.output.strip()  # the tiny model's three tokens
    missing = invoke("generate", "models:/m@nobody", "hi")
    assert missing.exit_code == 2 and "no alias 'nobody'" in missing.output


def test_register_tags_lineage_records_the_system_prompt_and_reports_identical_retrains(
    home: Home, artifact: Path, tiny_model_dir: Path,
) -> None:
    import shutil

    from adapterflow.methods.artifacts import MANIFEST, adapter_identity
    from adapterflow.models.base import load_tokenizer
    from adapterflow.storage.records import DataTable, EvalResult, RunContext, SplitResult, TrainResult
    from adapterflow.tokenization.chat import apply_template_choice, tokenizer_fingerprint
    from adapterflow.tracking.run import download_artifacts
    from schemas.pipeline import PipelineConfig
    from tasks.register import register
    from tests.conftest import ASSETS

    cached = home.cache / "adapters" / "k1"
    shutil.copytree(artifact.parent / "trained", cached / "adapter")  # as training left it: no prompt recorded
    trained = TrainResult(key="k1", uri=f"{home.cache}/adapters/k1", metrics={})
    table = DataTable(path="x", rows=8, task="sft")
    split = SplitResult(train=table, eval=table.model_copy(update={"rows": 2}), fingerprint="f" * 64, uri="u")
    evaluation = EvalResult(metrics={"base": {"perplexity": 30.0}, "candidate": {"perplexity": 20.0}},
                            champion_version=None, samples_path=None)
    config = PipelineConfig.model_validate({"name": "m", "base_model": str(tiny_model_dir),
                                            "data": {"sources": [{"path": str(ASSETS / "chat.jsonl")}]},
                                            "tokenize": {"system_prompt": SYSTEM_PROMPT}})
    client = MlflowClient()
    experiment = client.create_experiment("reg", artifact_location=str(home.root / "mlartifacts"))

    def run_context() -> RunContext:
        return RunContext(run_name="r", run_dir=str(home.root), home=str(home.root), experiment="reg",
                          mlflow_run_id=client.create_run(experiment).info.run_id, config_sha256="c" * 64,
                          storage=str(home.cache))

    first_run = run_context()
    first = register.fn(trained, evaluation, tiny_base(tiny_model_dir), split, config, first_run)
    assert (first.version, first.identical) == ("1", False)
    tags = client.get_model_version("m", "1").tags
    tokenizer = load_tokenizer(tiny_model_dir)
    apply_template_choice(tokenizer, config.tokenize.chat_template)  # what the tokenize stage hashes
    assert tags["adapterflow.tokenizer_sha256"] == tokenizer_fingerprint(tokenizer)
    assert (tags["adapterflow.train_rows"], tags["adapterflow.eval_rows"]) == ("8", "2")
    assert tags["adapterflow.mlflow_run_id"] == first_run.mlflow_run_id
    registered = download_artifacts("models:/m/1") / "artifacts" / "adapter"
    assert tags["adapterflow.adapter_sha256"] == adapter_identity(tiny_base(tiny_model_dir).sha256, registered)
    assert json.loads((registered / MANIFEST).read_text())["prompting"] == {"system_prompt": SYSTEM_PROMPT}
    assert "prompting" not in json.loads((cached / "adapter" / MANIFEST).read_text())  # the cache is untouched
    retried = register.fn(trained, evaluation, tiny_base(tiny_model_dir), split, config, first_run)
    assert (retried.version, retried.identical) == ("1", False)  # a retried stage or resumed run: no second version

    retrain = run_context()
    again = register.fn(trained, evaluation, tiny_base(tiny_model_dir), split, config, retrain)
    assert (again.version, again.identical, again.model_uri) == ("1", True, "models:/m/1")
    assert [v.version for v in client.search_model_versions("name='m'")] in (["1"], [1])
    assert client.get_run(retrain.mlflow_run_id).data.tags["adapterflow.identical_to"] == "models:/m/1"
    other = config.model_copy(update={"tokenize": config.tokenize.model_copy(update={"system_prompt": "Be brief."})})
    changed = register.fn(trained, evaluation, tiny_base(tiny_model_dir), split, other, run_context())
    assert (changed.version, changed.identical) == ("2", False)  # another system prompt: another model


def test_logged_metrics_compare_only_on_the_same_eval_set_and_tokenizer() -> None:
    from adapterflow.registry.versions import not_comparable

    ours = {"adapterflow.eval_set": "e1", "adapterflow.tokenizer_sha256": "t1"}
    assert not_comparable(ours, dict(ours)) is None
    assert "another tokenizer and chat template" in not_comparable(ours, ours | {"adapterflow.tokenizer_sha256": "t2"})
    assert "eval set of the champion is not recorded" in not_comparable(ours, {"adapterflow.tokenizer_sha256": "t1"})


def test_rollback_plan_copes_with_a_champion_moved_outside_adapterflow() -> None:
    from adapterflow.core.errors import UsageError
    from adapterflow.registry.history import dump_history, parse_history, plan_rollback, with_champion

    history = with_champion(with_champion([], "1", "t1", "a", ""), "2", "t2", "a", "")
    assert with_champion(history, "2", "t3", "a", "") == history  # no entry for a move to itself
    moved = plan_rollback("m", history, "5")  # champion set to v5 in the MLflow UI
    assert (moved.from_version, moved.to_version, moved.previous) == ("5", "2", "1")
    assert parse_history(None, "3", "2") == [{"version": "2"}, {"version": "3"}]  # promoted before the history tag
    with pytest.raises(UsageError, match="only champion on record"):
        plan_rollback("m", [{"version": "3"}], "3")
    long = [{"version": "0"}]
    for version in range(1, 200):
        long = with_champion(long, str(version), "2026-11-30T12:00:00+00:00", "someone", "x" * 1000)
    kept = json.loads(dump_history(long))
    assert len(dump_history(long)) <= 5000 and kept[-1]["version"] == "199" and len(kept[-1]["reason"]) == 300


def test_age_is_told_in_the_largest_unit_that_fits() -> None:
    from adapterflow.reporting.console import age

    now = 1_000_000.0
    assert [age(int((now - seconds) * 1000), now) for seconds in (5, 300, 7200, 3 * 86400)] == ["5 s", "5 min", "2 h", "3 d"]


@pytest.fixture
def add_run_version(home: Home, artifact: Path, tiny_model_dir: Path):
    """Register a version of model `m` from a run with the given metrics and params and, when `promotion` is
    given, a logged config artifact holding that `registry.promotion` (as tasks/track.py::open_run logs it)."""
    client = MlflowClient()
    experiment = client.create_experiment("m", artifact_location=str(home.root / "mlartifacts"))

    def add(metrics: dict[str, float], params: dict[str, str], promotion: dict | None = None) -> str:
        run_id = client.create_run(experiment).info.run_id
        for key, value in (metrics | {"data/validation_success": 1.0}).items():
            client.log_metric(run_id, key, value)
        for key, value in params.items():
            client.log_param(run_id, key, value)
        if promotion is not None:
            client.log_dict(run_id, {"name": "m", "registry": {"model_name": None, "promotion": promotion}},
                            "config/config.yaml")
        tags = {"adapterflow.method": "lora", "adapterflow.base_model": "tiny", "adapterflow.eval_set": "e" * 64}
        return register_adapter(client, run_id, "m", str(artifact), tiny_base(tiny_model_dir), tags, "d")[0]

    return add


LM_METRICS = {"eval/base/perplexity": 30.0, "eval/candidate/perplexity": 20.0, "eval/candidate/loss": 2.0}
# the guards list cut at MLflow's param limit, as a long policy is logged: unreadable as a policy
TRUNCATED = {"registry.promotion.min_improvement": "0.01", "registry.promotion.guards": "[{'metric': 'loss', 'max_"}


def test_promote_judges_by_the_policy_in_the_runs_logged_config_not_its_cut_params(add_run_version) -> None:
    version = add_run_version(LM_METRICS, TRUNCATED, promotion={"min_improvement": 0.5})
    refused = invoke("promote", "m", version)  # 33% better than the base model: the default 1% would promote
    assert refused.exit_code == 1, refused.output
    assert "FAIL primary perplexity: candidate perplexity 20 vs the base model 30: +33.33% improvement, gate needs " \
           "at least 50.00%" in refused.output
    assert "champion" not in aliases()
    better = add_run_version(LM_METRICS | {"eval/candidate/perplexity": 12.0}, TRUNCATED, promotion={"min_improvement": 0.5})
    promoted = invoke("promote", "m", better)
    assert promoted.exit_code == 0 and "+60.00% improvement, gate needs at least 50.00%" in promoted.output
    assert aliases()["champion"] == better


def test_promote_refuses_to_guess_a_policy_its_run_did_not_log_readably(add_run_version) -> None:
    version = add_run_version(LM_METRICS, TRUNCATED)  # no config artifact, a cut param
    run_id = MlflowClient().get_model_version("m", version).run_id
    result = invoke("promote", "m", version)
    assert result.exit_code == 2, result.output
    assert f"m version {version}: the promotion policy its MLflow run {run_id} logged as registry.promotion.* params " \
           "is not valid: registry.promotion.guards: Input should be a valid list" in result.output
    assert "--force --reason" in result.output and "champion" not in aliases()
    broken = add_run_version(LM_METRICS, {}, promotion={"min_improvement": 5.0})  # the artifact wins over params
    refused = invoke("promote", "m", broken)
    assert refused.exit_code == 2 and "registry.promotion.min_improvement: Input should be less than 1" in refused.output
    bare = invoke("promote", "m", add_run_version(LM_METRICS, {}))
    assert bare.exit_code == 2 and "logged no readable promotion policy: neither config/config.yaml" in bare.output
    forced = invoke("promote", "m", version, "--force", "--reason", "policy lost with the old store")
    assert forced.exit_code == 0 and "forced by" in forced.output and aliases()["champion"] == version
    record = MlflowClient().get_model_version("m", version).tags["adapterflow.promotion"]
    assert record.startswith(f"forced by {current_user()}: policy lost with the old store (the gate: not promoted: "
                             f"m version {version}: the promotion policy its MLflow run")


def test_promote_holds_a_first_classifier_to_the_logged_majority_baseline(add_run_version) -> None:
    def classifier(f1: float) -> dict[str, float]:
        return {"eval/base/macro_f1": 0.1, "eval/candidate/macro_f1": f1, "eval/candidate/accuracy": 0.7,
                "eval/candidate/loss": 0.6, "eval/majority/macro_f1": 0.4, "eval/majority/accuracy": 0.67}

    below = add_run_version(classifier(0.35), {}, promotion={})  # far above the random head, below the majority
    refused = invoke("promote", "m", below)
    assert refused.exit_code == 1, refused.output
    assert "FAIL primary macro_f1: candidate macro_f1 0.35 vs the majority-class baseline (always the most frequent " \
           "eval label) 0.4" in refused.output and "champion" not in aliases()
    shown = invoke("models", "show", f"m/{below}")
    rows = [line.replace("\u2502", " ").replace("\u2503", " ").split() for line in shown.output.splitlines()]  # cells
    assert ["metric", "base", "majority", "candidate"] in rows, shown.output  # a row per metric: fits 80 columns
    assert ["accuracy", "-", "0.6700", "0.7000"] in rows and ["macro_f1", "0.1000", "0.4000", "0.3500"] in rows
    above = add_run_version(classifier(0.5), {}, promotion={})
    promoted = invoke("promote", "m", above)
    assert promoted.exit_code == 0, promoted.output
    assert "pass primary macro_f1: candidate macro_f1 0.5 vs the majority-class baseline" in promoted.output
    assert aliases()["champion"] == above
