"""Evaluate: the candidate against the base model and the current champion, on the same eval split.

Causal LMs (sft, pretrain) are judged by loss and perplexity on the label tokens, classifiers by accuracy
and macro-F1.

Each model is scored as it is served: the champion with the system prompt its registration recorded (its eval
rows tokenized again with it when this run's differs), the base model and the candidate with this run's.

Each model's result is cached by (model weights, eval data, settings): on a retrain the base model
and an unchanged champion are not evaluated again.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from itertools import islice
from pathlib import Path

import pandas as pd
import torch

from adapterflow.core.devices import select_device_and_precision
from adapterflow.core.hashing import cache_key, code_key, sha256_json
from adapterflow.core.logs import stage_logger
from adapterflow.data.tables import iter_rows
from adapterflow.evaluation.comparison import (
    add_forgetting,
    comparison_table,
    correctness,
    log_comparison_plots,
    score_generations,
)
from adapterflow.evaluation.forgetting import general_perplexity, load_general_passages
from adapterflow.evaluation.metrics import classification_metrics, generate_answers, response_perplexity
from adapterflow.evaluation.stored_adapters import EvalModel, base_identity, load_base_as_trained, load_stored_adapter
from adapterflow.methods.artifacts import adapter_identity, read_manifest, read_prompting
from adapterflow.models.base import load_tokenizer
from adapterflow.orchestration.stage import stage
from adapterflow.registry import ChampionRef, find_champion
from adapterflow.registry.promotion import MAJORITY, majority_class_metrics
from adapterflow.storage.records import (
    BaseModelRef,
    DataTable,
    EvalResult,
    RunContext,
    SplitResult,
    TokenizedData,
    TrainResult,
)
from adapterflow.storage.store import Storage, run_storage
from adapterflow.tokenization.chat import prompt_messages, tokenizer_fingerprint
from adapterflow.tokenization.dataset import TokenDataset
from adapterflow.tracking.run import PER_EXAMPLE_ARTIFACT, RunTracker, eval_metric
from schemas.pipeline import PipelineConfig
from tasks.tokenize import tokenize_eval_with_prompt

RESULT_FILE = "result.json"
SAMPLES_ARTIFACT = "eval/samples.json"  # in the MLflow run: evaluation may run on another machine
SAME_AS_RUN = "same as the run"


@dataclass
class Prompting:
    """A model's own system prompt where it differs from the run's: the eval rows tokenized with it, the prompt
    for its sampled generations, and how the result names it (a hash: a system prompt may hold a secret)."""

    tokenized: TokenizedData
    system_prompt: str | None
    described: str


@dataclass
class Contender:
    """A model to evaluate: the base alone (loaded as the artifact `loaded_as` trained on it), or the base with
    an adapter; scored with the run's eval rows and system prompt unless it has a `prompting` of its own."""

    name: str
    base_path: str
    identity: str
    adapter_dir: str | None = None
    loaded_as: str | None = None
    prompting: Prompting | None = None


def contenders(base: BaseModelRef, adapter_dir: Path, champion: ChampionRef | None,
               champion_prompting: Prompting | None = None) -> list[Contender]:
    models = [
        Contender("base", base.path, base_identity(base.sha256, adapter_dir), loaded_as=str(adapter_dir)),
        Contender("candidate", base.path, adapter_identity(base.sha256, adapter_dir), str(adapter_dir)),
    ]
    if champion is not None:
        identity = adapter_identity(champion.base_sha256, champion.adapter_dir)
        models.append(Contender("champion", champion.base_path, identity, champion.adapter_dir,
                                prompting=champion_prompting))
    return models


def described_prompt(system_prompt: str | None) -> str:
    return "none" if system_prompt is None else f"sha256 {sha256_json(system_prompt)[:12]}"


def champion_prompting(champion: ChampionRef, split: SplitResult, base: BaseModelRef, config: PipelineConfig,
                       tokenized: TokenizedData, storage: Storage) -> Prompting | None:
    """The champion's recorded system prompt and the eval rows tokenized with it, when it differs from this run's
    (sft only; the chat template is the run's, champion_mismatch refuses another); None: scored like the run's
    models, also when nothing is recorded. Its perplexity stays comparable: only the answer (label) tokens are
    scored, and the prompt's tokens are context, never labels."""
    recorded = read_prompting(champion.adapter_dir)
    if tokenized.task != "sft" or recorded is None or recorded["system_prompt"] == config.tokenize.system_prompt:
        return None
    prompt = recorded["system_prompt"]
    own = tokenize_eval_with_prompt(split, base, config.tokenize, tokenized, prompt, storage)
    stage_logger().info("champion v%s is scored with its own system prompt (%s), not this run's", champion.version,
                        described_prompt(prompt))
    return Prompting(own, prompt, described_prompt(prompt))


def champion_mismatch(champion: ChampionRef, tokenized: TokenizedData, base: BaseModelRef, adapter_dir: Path) -> str | None:
    """Why the champion can't be evaluated on this run's eval data (another task, label set, base model,
    tokenizer or chat template), or None when it can."""
    spec = read_manifest(champion.adapter_dir)[1]
    problems = []
    if spec.task != tokenized.task or spec.label_names != tokenized.label_names:
        problems.append(f"it is a {spec.task} model (labels {spec.label_names}), this run trains {tokenized.task} "
                        f"(labels {tokenized.label_names})")
    if champion.base_sha256 != base.sha256:
        problems.append(f"its base model weights differ (sha256 {champion.base_sha256[:12]} vs {base.sha256[:12]})")
    if tokenizer_fingerprint(load_tokenizer(champion.adapter_dir)) != tokenizer_fingerprint(load_tokenizer(adapter_dir)):
        problems.append("its tokenizer or chat template differs from this run's")
    return "; ".join(problems) or None


def comparable_champion(
    champion: ChampionRef | None, tokenized: TokenizedData, base: BaseModelRef, adapter_dir: Path,
) -> tuple[ChampionRef | None, str | None]:
    """The champion when it can be evaluated on the same examples; otherwise None and why (logged)."""
    if champion is None:
        return None, None
    mismatch = champion_mismatch(champion, tokenized, base, adapter_dir)
    if mismatch:
        stage_logger().warning("champion v%s is not comparable: %s", champion.version, mismatch)
        return None, f"not comparable: {mismatch}"
    return champion, None


def classifier_baselines(tokenized: TokenizedData, storage: Storage) -> dict[str, dict[str, float]]:
    """A classifier's reference before it has a champion: the majority class of the eval labels (the base
    model's head is random, so beating it proves nothing)."""
    if tokenized.task != "classification":
        return {}
    labels = TokenDataset(storage.fetch(tokenized.uri) / "eval.parquet").labels
    return {MAJORITY: majority_class_metrics(labels.tolist())}


def sample_conversations(eval_table: DataTable, count: int, system_prompt: str | None) -> tuple[list, list[str]]:
    """The first `count` eval prompts and their reference answers."""
    conversations, references = [], []
    for row in islice(iter_rows(eval_table), count):
        if "messages" not in row:
            break
        messages = prompt_messages(row["messages"])
        if system_prompt and messages[0]["role"] != "system":
            messages = [{"role": "system", "content": system_prompt}, *messages]
        conversations.append(messages)
        references.append(row["messages"][-1]["content"])
    return conversations, references


def evaluate_contenders(
    models: list[Contender], tokenized: TokenizedData, eval_table: DataTable, config: PipelineConfig, storage: Storage,
    general_passages: list[str] | None = None,
) -> dict[str, dict]:
    """{model name: {"metrics": {...}, "answers": [...], "per_example": {...}}} for every contender, cached per
    model in the store (the key covers metrics.py through code_key's imports, so a result from code that kept no
    per-example values is not reused).
    `general_passages`: the general set's passages when the pipeline read them (its file is on another machine)."""
    device, precision = select_device_and_precision(config.execution.device, config.training.precision)
    settings = config.evaluation
    passages = [] if tokenized.task == "classification" or not settings.general_passages else \
        general_passages or load_general_passages(settings.general_set, settings.general_passages)
    # the general set by content, not by path; generation scores are computed from the stored answers
    scored_settings = settings.model_dump(mode="json", exclude={"general_set", "generation_metrics"})
    run_prompting = Prompting(tokenized, config.tokenize.system_prompt, SAME_AS_RUN)
    results: dict[str, dict] = {}
    for contender in models:
        own = contender.prompting or run_prompting
        conversations, _ = sample_conversations(eval_table, settings.sample_generations, own.system_prompt)
        key = cache_key("eval", code_key(__name__), contender.identity, own.tokenized.key, conversations, passages,
                        scored_settings, config.base_model.dtype, precision, device.type)
        key, cached = storage.reusable("evaluations", key, RESULT_FILE, config.execution.cache)
        if cached is not None:
            results[contender.name] = json.loads((cached / RESULT_FILE).read_text()) | {"skipped": True}
            continue
        loaded = load_contender(contender, device)
        model, tokenizer = loaded.model, loaded.tokenizer
        dataset = TokenDataset(storage.fetch(own.tokenized.uri) / "eval.parquet")
        if tokenized.task == "classification":
            metrics, per_example = classification_metrics(model, dataset, tokenizer.pad_token_id,
                                                          settings.batch_size, device, precision)
            answers = [tokenized.label_names[int(index)]
                       for index in per_example["predicted"][: settings.sample_generations]]
        else:
            metrics, per_example = response_perplexity(model, dataset, tokenizer.pad_token_id, settings.batch_size,
                                                       device, precision, packed=loaded.packed)
            answers = generate_answers(model, tokenizer, conversations, settings.max_new_tokens, device, precision,
                                       settings.generation_batch_size)
            if passages:
                metrics |= general_perplexity(model, tokenizer, passages, settings.batch_size, device, precision)
        results[contender.name] = {"metrics": metrics, "answers": answers, "per_example": per_example}
        staging = storage.staging_dir("evaluation")
        (staging / RESULT_FILE).write_text(json.dumps(results[contender.name], indent=2))
        storage.publish(staging, "evaluations", key, RESULT_FILE)
        del loaded, model  # one model in memory at a time
    return results


def load_contender(contender: Contender, device: torch.device) -> EvalModel:
    """The base model alone (with a fresh, seeded head for classification), or a trained artifact on it."""
    if contender.adapter_dir is not None:
        return load_stored_adapter(contender.adapter_dir, contender.base_path, device)
    return load_base_as_trained(contender.loaded_as, contender.base_path, device)


def comparison_examples(
    eval_table: DataTable, count: int, system_prompt: str | None, label_names: list[str],
) -> tuple[str, list[str], list[str]]:
    """(input column name, inputs, references) of the first `count` eval examples the models answered."""
    if eval_table.task == "classification":  # the rows tokenization kept (labels seen in training), in order
        rows = list(islice((row for row in iter_rows(eval_table) if row["label"] in label_names), count))
        return "text", [row["text"] for row in rows], [row["label"] for row in rows]
    conversations, references = sample_conversations(eval_table, count, system_prompt)
    return "prompt", [c[-1]["content"] for c in conversations], references


def compare_side_by_side(
    eval_table: DataTable, results: dict[str, dict], config: PipelineConfig, label_names: list[str],
) -> pd.DataFrame:
    """Score every model's answers (generation metrics, or correctness for classifiers), add forgetting to its
    metrics and the generation scores to its per-example values, and return the comparison table of the same
    examples."""
    settings = config.evaluation
    column, inputs, references = comparison_examples(eval_table, settings.sample_generations,
                                                     config.tokenize.system_prompt, label_names)
    if eval_table.task == "classification":
        per_example = correctness(results, references)
    else:
        per_example = score_generations(results, references, settings.generation_metrics)
        for name, rows in per_example.items():
            results[name]["per_example"] |= {metric: [row[metric] for row in rows]
                                             for metric in settings.generation_metrics}
    add_forgetting(results)
    return comparison_table(inputs, references, results, per_example, column)


@stage("evaluate", retries=1, tags=["gpu"])
def evaluate(
    trained: TrainResult, tokenized: TokenizedData, split: SplitResult, base: BaseModelRef,
    config: PipelineConfig, run: RunContext, general_passages: list[str] | None = None,
) -> EvalResult:
    """Evaluate base, candidate and champion; log `eval/<model>/<metric>` and the samples table.
    `general_passages`: evaluation.general_set as read on the pipeline's machine (a GPU worker lacks the file)."""
    storage = run_storage(run)
    eval_table = split.eval.model_copy(update={"path": str(storage.fetch(split.uri) / "eval.parquet")})
    adapter_dir = storage.fetch(trained.uri) / "adapter"
    if config.evaluation.compare_champion:
        champion, champion_skipped = comparable_champion(find_champion(config.registered_model_name), tokenized,
                                                         base, adapter_dir)
    else:
        champion, champion_skipped = None, "evaluation.compare_champion is false"
    own = None if champion is None else champion_prompting(champion, split.model_copy(update={"eval": eval_table}),
                                                           base, config, tokenized, storage)
    models = contenders(base, adapter_dir, champion, own)
    results = evaluate_contenders(models, tokenized, eval_table, config, storage, general_passages)
    table = compare_side_by_side(eval_table, results, config, tokenized.label_names)
    tracker = RunTracker.for_run(run)  # the samples quote eval rows and what the models made of them
    tracker.log_metrics({eval_metric(name, metric): value for name, result in results.items()
                         for metric, value in result["metrics"].items()})
    baselines = classifier_baselines(tokenized, storage)
    tracker.log_metrics({eval_metric(name, metric): value for name, values in baselines.items()
                         for metric, value in values.items()})
    samples_path = None
    if len(table):
        tracker.log_table(table, SAMPLES_ARTIFACT)
        samples_path = SAMPLES_ARTIFACT
    per_example = {name: result["per_example"] for name, result in results.items()}
    tracker.log_dict(per_example, PER_EXAMPLE_ARTIFACT)  # numbers only: for `adapterflow promote`'s paired comparison
    log_comparison_plots(tracker, {name: result["metrics"] for name, result in results.items()})
    logger = stage_logger()
    primary = "macro_f1" if tokenized.task == "classification" else "perplexity"
    system_prompts = {model.name: model.prompting.described if model.prompting else SAME_AS_RUN for model in models}
    for name, result in results.items():
        logger.info("%s: %s %.4f, loss %.4f, system prompt %s%s", name, primary, result["metrics"][primary],
                    result["metrics"]["loss"], system_prompts[name], " (cached)" if result.get("skipped") else "")
    return EvalResult(
        metrics={name: result["metrics"] for name, result in results.items()},
        primary_metric=primary,
        champion_version=champion.version if champion else None,
        champion_skipped=champion_skipped,
        baselines=baselines,
        per_example=per_example,
        system_prompts=system_prompts,
        samples_path=samples_path,
        skipped=all(result.get("skipped") for result in results.values()),
    )
