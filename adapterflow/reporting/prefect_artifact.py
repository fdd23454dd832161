"""The run summary as a Prefect markdown artifact: what the flow run's page in the Prefect UI shows at its end."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from adapterflow.evaluation.metrics import EVAL_METRICS
from adapterflow.reporting.drift import drift_markdown
from adapterflow.tracking.redaction import Redactor

if TYPE_CHECKING:
    from schemas.data import PiiConfig

ARTIFACT_KEY_PREFIX = "adapterflow-summary"  # Prefect artifact keys: lowercase letters, digits and dashes
MODEL_ORDER = ("base", "champion", "candidate")


def artifact_key(experiment: str) -> str:
    """A Prefect artifact key from the experiment name (the artifact's versions then line up per model)."""
    slug = "".join(ch if ch.isalnum() else "-" for ch in experiment.lower()).strip("-")
    return f"{ARTIFACT_KEY_PREFIX}-{slug}"[:120]


def metrics_markdown(metrics: Mapping[str, Mapping[str, float]]) -> list[str]:
    models = [name for name in MODEL_ORDER if name in metrics]
    if not models:
        return []
    columns = [name for name in EVAL_METRICS if name in metrics[models[-1]]]
    lines = [f"| model | {' | '.join(columns)} |", f"|---|{'---:|' * len(columns)}"]
    for model in models:
        cells = [f"{metrics[model][column]:.4g}" if column in metrics[model] else "" for column in columns]
        lines.append(f"| {model} | {' | '.join(cells)} |")
    return lines


def training_markdown(training: Mapping[str, float], stopped_early: str | None) -> list[str]:
    """The training's length: steps run, the step kept and why training stopped there."""
    if "train/steps" not in training:
        return []
    lines = ["", "## Training", "", f"- steps: {training['train/steps']:.0f}"]
    if "train/best_step" in training:
        lines.append(f"- weights kept: step {training['train/kept_step']:.0f} (best val/loss "
                     f"{training['val/best_loss']:.4f} at step {training['train/best_step']:.0f}; validation took "
                     f"{100 * training['train/validation_share']:.0f}% of the training time)")
    lines.append(f"- stopped: {stopped_early or 'at its end (epochs or max_steps)'}")
    return lines


def summary_markdown(summary: Mapping[str, Any]) -> str:
    """Markdown of a run summary: outcome, version and promotion with every reason, what changed since the
    champion's data, the metrics side by side, and the seconds each stage took."""
    version = summary.get("model_version")
    lines = [f"# {summary.get('experiment', '')}: {summary.get('outcome', 'data check')}", "",
             f"- MLflow run: `{summary.get('mlflow_run_id')}`"]
    if "promoted" in summary:  # a training run; a data check registers nothing
        lines += [f"- registered model: `{summary.get('registered_model')}`" + (f" version {version}" if version else ""),
                  f"- promoted: **{'yes' if summary['promoted'] else 'no'}**: {summary.get('promotion_reason', '')}"]
        lines += [f"  - {reason}" for reason in summary.get("promotion_reasons") or []]
    if summary.get("drift"):
        lines += drift_markdown(summary["drift"])
    lines += training_markdown(summary.get("training") or {}, summary.get("stopped_early"))
    table = metrics_markdown(summary.get("metrics") or {})
    if table:
        lines += ["", "## Evaluation (same examples for every model)", "", *table]
    timings = summary.get("timings") or {}
    if timings:
        skipped = set(summary.get("skipped") or [])
        lines += ["", "## Stages", "", "| stage | seconds |", "|---|---:|"]
        lines += [f"| {name}{' (cached)' if name in skipped else ''} | {seconds:.1f} |"
                  for name, seconds in timings.items() if seconds is not None]
    return "\n".join(lines) + "\n"


def publish_summary_artifact(summary: Mapping[str, Any], pii: PiiConfig | None = None) -> str:
    """Create the summary's markdown artifact (secrets, and personal data when `pii` is given, redacted) in the
    current Prefect flow or task run; return the markdown published."""
    from prefect.artifacts import create_markdown_artifact

    markdown = Redactor(pii).text(summary_markdown(summary))
    create_markdown_artifact(markdown=markdown, key=artifact_key(str(summary.get("experiment", "run"))),
                             description="adapterflow run summary")
    return markdown
