"""Reading registered versions for the registry commands: references, eval metrics, lineage, the gate's verdict."""

from __future__ import annotations

import ast
import json
import re
import tempfile
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import yaml
from mlflow.entities import Run
from mlflow.entities.model_registry import ModelVersion
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient
from pydantic import ValidationError

from adapterflow.core.errors import UsageError
from adapterflow.evaluation.eval_sets import TAG_EVAL_SET
from adapterflow.registry.client import alias_version
from adapterflow.registry.promotion import MAJORITY, Check, PromotionDecision, gate_inputs, promotion_decision
from adapterflow.tracking.run import (
    ALIAS_CHAMPION,
    CONFIG_ARTIFACT,
    CONFIG_ARTIFACT_DIR,
    PER_EXAMPLE_ARTIFACT,
    TAG_BASE_MODEL,
    TAG_BASE_MODEL_SHA,
    TAG_DATASET_FINGERPRINT,
    TAG_METHOD,
    TAG_TOKENIZER_SHA,
)
from schemas.registry import PromotionPolicy

# the majority-class baseline is logged as eval/majority/<metric> by tasks/evaluate.py (classifiers only)
EVAL_METRIC = re.compile(rf"^eval/(base|candidate|champion|{MAJORITY})/([^/]+)$")
KEY_METRICS = {"sft": ("perplexity", "loss"), "classification": ("macro_f1", "accuracy")}
LINEAGE_TAGS = {"base_model": TAG_BASE_MODEL, "dataset_fingerprint": TAG_DATASET_FINGERPRINT, "eval_set": TAG_EVAL_SET}
REFERENCE_HINT = "name a version as NAME/VERSION or NAME@ALIAS (see adapterflow models list NAME)"


def parse_reference(reference: str) -> tuple[str, str | None, str | None]:
    """(name, version, alias) of `NAME/VERSION`, `NAME@ALIAS`, with or without `models:/`."""
    text = reference.removeprefix("models:/")
    if "@" in text:
        name, alias = text.rsplit("@", 1)
        if name and alias:
            return name, None, alias
    elif "/" in text:
        name, version = text.rsplit("/", 1)
        if name and version.isdigit():
            return name, version, None
    raise UsageError(f"{reference!r} names no model version", hint=REFERENCE_HINT)


def registered_model(client: MlflowClient, name: str) -> Any:
    """The registered model, or a usage error naming it."""
    try:
        return client.get_registered_model(name)
    except MlflowException:
        raise UsageError(f"there is no registered model {name!r}",
                         hint="adapterflow ui lists the registered models; a run registers its config's name") from None


def model_version(client: MlflowClient, name: str, version: str | None = None, alias: str | None = None) -> ModelVersion:
    """One version by number or alias; an unknown model, version or alias is a usage error."""
    model = registered_model(client, name)
    if alias is not None:
        if alias not in model.aliases:
            known = ", ".join(f"{key} (v{value})" for key, value in sorted(model.aliases.items())) or "none"
            raise UsageError(f"{name} has no alias {alias!r}; its aliases: {known}", hint=REFERENCE_HINT)
        version = str(model.aliases[alias])
    try:
        return client.get_model_version(name, str(version))
    except MlflowException:
        raise UsageError(f"{name} has no version {version}",
                         hint=f"adapterflow models list {name} shows its versions") from None


def version_aliases(model: Any, version: str) -> list[str]:
    return sorted(alias for alias, target in model.aliases.items() if str(target) == str(version))


def model_aliases(client: MlflowClient, name: str) -> dict[str, str]:
    """{alias: version} of a registered model, as it stands now."""
    return {alias: str(version) for alias, version in sorted(registered_model(client, name).aliases.items())}


def version_record(model: Any, version: ModelVersion, metrics: dict[str, Any]) -> dict[str, Any]:
    """A version as the registry commands report it (README, "Registry commands"): number, aliases, when it was
    registered (UTC, ISO 8601), method, the `metrics` given and its lineage tags (None where not recorded)."""
    created = datetime.fromtimestamp(version.creation_timestamp / 1000, timezone.utc).isoformat(timespec="seconds")
    return {"version": str(version.version), "aliases": version_aliases(model, version.version), "created": created,
            "method": version.tags.get(TAG_METHOD), "metrics": metrics,
            "lineage": {key: version.tags.get(tag) for key, tag in LINEAGE_TAGS.items()}}


def versions_listing(client: MlflowClient, name: str) -> dict[str, Any]:
    """`models list`: every version of the model, newest first, with its run's candidate eval metrics."""
    model = registered_model(client, name)
    versions = sorted(client.search_model_versions(f"name='{name}'"), key=lambda v: int(v.version), reverse=True)
    return {"name": name, "versions": [version_record(model, version, run_eval_metrics(client, version.run_id)
                                                      .get("candidate", {})) for version in versions]}


def version_details(client: MlflowClient, name: str, version: ModelVersion) -> dict[str, Any]:
    """`models show`: one version with its run's eval metrics by model, the run, the source and every tag."""
    record = version_record(registered_model(client, name), version, run_eval_metrics(client, version.run_id))
    return {"name": name, **record, "run_id": version.run_id, "source": version.source,
            "tags": dict(sorted(version.tags.items()))}


def run_eval_metrics(client: MlflowClient, run_id: str | None) -> dict[str, dict[str, float]]:
    """The run's `eval/<model>/<metric>` values as {model: {metric: value}}, the majority-class baseline among the
    models (empty when the run is gone)."""
    if not run_id:
        return {}
    try:
        return group_eval_metrics(client.get_run(run_id).data.metrics)
    except MlflowException:
        return {}


def run_per_example(client: MlflowClient, run_id: str | None) -> dict[str, dict[str, list[float]]]:
    """The per-example eval values the run logged ({model: {value: [...]}}); empty for a run from before they were
    logged, or one that is gone."""
    if not run_id:
        return {}
    folder, name = PER_EXAMPLE_ARTIFACT.rsplit("/", 1)
    try:
        if PER_EXAMPLE_ARTIFACT not in {artifact.path for artifact in client.list_artifacts(run_id, folder)}:
            return {}
        with tempfile.TemporaryDirectory(prefix="adapterflow-examples-") as staging:
            return json.loads(Path(client.download_artifacts(run_id, PER_EXAMPLE_ARTIFACT, staging)).read_text())
    except MlflowException:
        return {}


def group_eval_metrics(metrics: dict[str, float]) -> dict[str, dict[str, float]]:
    grouped: dict[str, dict[str, float]] = {}
    for key, value in metrics.items():
        if match := EVAL_METRIC.match(key):
            grouped.setdefault(match.group(1), {})[match.group(2)] = value
    return grouped


def primary_metric(candidate: dict[str, float]) -> str:
    """The metric a task is judged by: macro-F1 for classifiers, perplexity for language models."""
    return "macro_f1" if "macro_f1" in candidate else "perplexity"


class PolicyUnreadable(UsageError):
    """The version's run logged no promotion policy that can be read: the gate can't judge it."""

    def decision(self) -> PromotionDecision:
        """The gate's verdict without a policy: one failed check, which only --force overrides."""
        return PromotionDecision((Check("promotion_policy", False, self.message),), None)


def logged_policy(client: MlflowClient, run_id: str) -> tuple[bool, Any]:
    """(whether the run logged its config artifact, the `registry.promotion` section in it or None)."""
    if CONFIG_ARTIFACT not in {artifact.path for artifact in client.list_artifacts(run_id, CONFIG_ARTIFACT_DIR)}:
        return False, None  # a run from before the artifact was logged
    with tempfile.TemporaryDirectory(prefix="adapterflow-config-") as folder:
        text = Path(client.download_artifacts(run_id, CONFIG_ARTIFACT, folder)).read_text()
    try:
        config = yaml.safe_load(text)
    except yaml.YAMLError:
        return True, None
    registry = config.get("registry") if isinstance(config, dict) else None
    return True, registry.get("promotion") if isinstance(registry, dict) else None


def params_policy(params: dict[str, str]) -> dict[str, Any]:
    """The logged `registry.promotion.*` params (lists and booleans were logged as Python literals)."""
    def value(text: str) -> Any:
        try:
            return ast.literal_eval(text)
        except (ValueError, SyntaxError):
            return text

    return {field: value(params[f"registry.promotion.{field}"]) for field in PromotionPolicy.model_fields
            if f"registry.promotion.{field}" in params}


def run_policy(client: MlflowClient, run: Run, where: str) -> PromotionPolicy:
    """The promotion policy the version's run was configured with: `registry.promotion` of its logged config, or,
    for runs from before that artifact, its params (redacted and truncated when logged, so only as a fallback).
    Never the default in their place: a policy that can't be read is an error naming `where`."""
    hint = ("promote it with --force --reason \"...\" to override the gate, or run its config again with "
            "adapterflow run to gate a fresh version")
    run_id = run.info.run_id
    logged, given = logged_policy(client, run_id)
    source = f"in {CONFIG_ARTIFACT}"
    if not logged:
        source, given = "as registry.promotion.* params", params_policy(run.data.params) or None
    if given is None:
        what = f"{CONFIG_ARTIFACT} holds no readable registry.promotion" if logged else \
            f"neither {CONFIG_ARTIFACT} nor registry.promotion.* params"
        raise PolicyUnreadable(f"{where}: its MLflow run {run_id} logged no readable promotion policy: {what}",
                               hint=hint)
    try:
        return PromotionPolicy.model_validate(given)
    except ValidationError as error:
        problems = "; ".join(f"{'.'.join(['registry.promotion', *map(str, e['loc'])])}: {e['msg']} "
                             f"(got {str(e.get('input'))[:80]!r})" for e in error.errors())
        raise PolicyUnreadable(f"{where}: the promotion policy its MLflow run {run_id} logged {source} is not "
                               f"valid: {problems}", hint=hint) from None


def not_comparable(version_tags: dict[str, str], champion_tags: dict[str, str]) -> str | None:
    """Why two versions' logged eval metrics can't be compared (None when they can): they must come from the
    same frozen eval set, on the same base model weights, through the same tokenizer and chat template."""
    for tag, what in ((TAG_EVAL_SET, "eval set"), (TAG_BASE_MODEL_SHA, "base model weights"),
                      (TAG_TOKENIZER_SHA, "tokenizer and chat template")):
        ours, theirs = version_tags.get(tag), champion_tags.get(tag)
        if tag == TAG_EVAL_SET and not (ours and theirs):
            return f"the {what} of {'this version' if not ours else 'the champion'} is not recorded ({tag})"
        if ours and theirs and ours != theirs:
            return f"another {what}: {ours[:12]} vs the champion's {theirs[:12]}"
    return None


@dataclass(frozen=True)
class Verdict:
    """The gate's decision on moving `champion` to a version, and the champion it was read against."""

    decision: PromotionDecision
    champion: str | None


def promotion_verdict(client: MlflowClient, name: str, version: ModelVersion) -> Verdict:
    """The gate (adapterflow.registry.promotion) on the version's logged eval metrics against the current champion's (its
    run's candidate metrics, when both were measured on the same eval set) or, without one, the logged majority-class
    baseline (classifiers) or base model, with the version's run's policy."""

    try:
        run = client.get_run(version.run_id)
    except MlflowException:
        raise UsageError(f"{name} version {version.version}: its MLflow run {version.run_id} is gone",
                         hint="only versions registered by adapterflow run can be gated") from None
    own = group_eval_metrics(run.data.metrics)
    if not own.get("candidate"):
        raise UsageError(f"{name} version {version.version} has no logged eval metrics (eval/candidate/*) in its "
                         f"run {version.run_id}", hint="only versions registered by adapterflow run can be gated")
    metrics = {"base": own.get("base", {}), "candidate": own["candidate"]}
    logged = run_per_example(client, run.info.run_id)
    per_example = {model: logged[model] for model in ("base", "candidate") if model in logged}
    champion = alias_version(client, name, ALIAS_CHAMPION)
    skipped = None
    if champion is not None:
        held = client.get_model_version(name, champion)
        skipped = not_comparable(version.tags, held.tags)
        if skipped is None:  # the champion's own run scored it, as its candidate, on the same eval set
            metrics["champion"] = run_eval_metrics(client, held.run_id).get("candidate", {})
            per_example["champion"] = run_per_example(client, held.run_id).get("candidate", {})
    baselines = {MAJORITY: own[MAJORITY]} if own.get(MAJORITY) else {}  # the pipeline gate's, as evaluate logged it
    inputs = gate_inputs(metrics, per_example, primary_metric(own["candidate"]), champion,
                         champion if champion is not None and skipped is None else None, skipped, baselines)
    policy = run_policy(client, run, f"{name} version {version.version}")
    return Verdict(promotion_decision(inputs, policy), champion)
