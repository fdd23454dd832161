"""Registry commands: `models list|show`, `promote`, `rollback`, `generate` (MLflow is imported when they run)."""

from __future__ import annotations

import time
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console
from rich.table import Table

from adapterflow.core.errors import AdapterflowError, UsageError

if TYPE_CHECKING:
    from mlflow.tracking import MlflowClient

console = Console(stderr=True, soft_wrap=True)
output = Console(soft_wrap=True)
models_app = typer.Typer(no_args_is_help=True, help="Registered models: versions, aliases, metrics, lineage.")

NameArg = Annotated[str, typer.Argument(help="registered model name", show_default=False)]
LINEAGE_COLUMNS = {"base model": "adapterflow.base_model", "data": "adapterflow.dataset_fingerprint",
                   "eval set": "adapterflow.eval_set"}


def _fail(error: AdapterflowError) -> typer.Exit:
    from adapterflow.reporting.console import render_error

    render_error(console, error)
    return typer.Exit(code=error.exit_code)


def _client() -> MlflowClient:
    """The registry client, on the embedded store unless MLFLOW_TRACKING_URI names another (imported late)."""
    from adapterflow.core.home import configure_environment

    configure_environment()
    from mlflow.tracking import MlflowClient

    return MlflowClient()


def age(created_ms: int, now_s: float) -> str:
    """How long ago a version was made, in the largest unit that fits: '40 s', '5 min', '3 h', '12 d'."""
    seconds = max(0, int(now_s - created_ms / 1000))
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if seconds >= size:
            return f"{seconds // size} {unit}"
    return f"{seconds} s"


def _short(value: str | None) -> str:
    if not value:
        return "-"
    return value[:12] if len(value) == 64 else value  # hashes shortened; names kept whole


@models_app.command("list")
def models_list(name: NameArg) -> None:
    """Every version of a registered model: aliases, key eval metrics from its run, lineage and age."""
    from adapterflow.registry.versions import KEY_METRICS, registered_model, run_eval_metrics, version_aliases

    client = _client()
    try:
        model = registered_model(client, name)
    except AdapterflowError as error:
        raise _fail(error) from None
    versions = sorted(client.search_model_versions(f"name='{name}'"), key=lambda v: int(v.version), reverse=True)
    rows = [(v, run_eval_metrics(client, v.run_id).get("candidate", {})) for v in versions]
    task = "classification" if any("macro_f1" in metrics for _, metrics in rows) else "sft"
    table = Table(title=f"{name}: {len(versions)} version(s)", header_style="bold")
    for column in ("version", "aliases", "age", "method", *KEY_METRICS[task], *LINEAGE_COLUMNS):
        table.add_column(column, justify="right" if column in KEY_METRICS[task] else "left", overflow="fold")
    now = time.time()
    for version, metrics in rows:
        table.add_row(str(version.version), ", ".join(version_aliases(model, version.version)) or "-",
                      age(version.creation_timestamp, now), version.tags.get("adapterflow.method", "-"),
                      *(f"{metrics[key]:.4f}" if key in metrics else "-" for key in KEY_METRICS[task]),
                      *(_short(version.tags.get(tag)) for tag in LINEAGE_COLUMNS.values()))
    output.print(table)


@models_app.command("show")
def models_show(
    reference: Annotated[str, typer.Argument(help="NAME@ALIAS or NAME/VERSION", show_default=False)],
) -> None:
    """Everything about one version: aliases, eval metrics of its run, lineage tags and promotion reasons."""
    from adapterflow.registry.versions import model_version, parse_reference, run_eval_metrics, version_aliases

    client = _client()
    try:
        name, number, alias = parse_reference(reference)
        version = model_version(client, name, number, alias)
    except AdapterflowError as error:
        raise _fail(error) from None
    aliases = version_aliases(client.get_registered_model(name), version.version)
    created = datetime.fromtimestamp(version.creation_timestamp / 1000, timezone.utc).isoformat(timespec="seconds")
    output.print(f"[bold]{name}[/] version {version.version}  aliases: {', '.join(aliases) or 'none'}", highlight=False)
    output.print(f"created {created} ({age(version.creation_timestamp, time.time())} ago), MLflow run "
                 f"{version.run_id}, source {version.source}", highlight=False)
    metrics = run_eval_metrics(client, version.run_id)
    if metrics:
        output.print(_metrics_table(metrics))
    tags = Table(title="Tags: lineage and promotion", header_style="bold")
    tags.add_column("tag")
    tags.add_column("value")
    for key, value in sorted(version.tags.items()):
        if not key.startswith("eval."):  # the metrics table shows them
            tags.add_row(key, value)
    output.print(tags)


def _metrics_table(metrics: dict[str, dict[str, float]]) -> Table:
    """The version's run's eval metrics by model (and the majority-class baseline, for classifiers); a metric one
    model lacks shows as '-'."""
    from adapterflow.registry.promotion import MAJORITY

    columns = sorted({metric for values in metrics.values() for metric in values})
    table = Table(title="Eval metrics of its run", header_style="bold")
    table.add_column("model")
    for column in columns:
        table.add_column(column, justify="right")
    for model in ("base", MAJORITY, "champion", "candidate"):
        if model in metrics:
            table.add_row(model, *(f"{metrics[model][c]:.4f}" if c in metrics[model] else "-" for c in columns))
    return table


def _record(gate_reason: str, forced_by: str | None, reason: str | None) -> str:
    """What the version's promotion tag and the champion history say about this move."""
    if forced_by:
        return f"forced by {forced_by}: {reason} (the gate: {gate_reason})"
    return gate_reason if not reason else f"{gate_reason}; note: {reason}"


def promote(
    name: NameArg,
    version: Annotated[str, typer.Argument(help="version number to make champion", show_default=False)],
    force: Annotated[bool, typer.Option("--force", help="move champion even if the gate refuses")] = False,
    reason: Annotated[str | None, typer.Option("--reason", help="why (required with --force; recorded in tags)")] = None,
) -> None:
    """Make a version champion if the promotion gate allows it (exit 1 when it refuses, unless --force)."""
    from adapterflow.registry.client import current_user, move_champion_if_unchanged
    from adapterflow.registry.history import MAX_CHARS
    from adapterflow.registry.promotion import promotion_aliases
    from adapterflow.registry.versions import PolicyUnreadable, Verdict, model_version, promotion_verdict
    from adapterflow.tracking.run import TAG_PROMOTION, TAG_PROMOTION_REASONS

    if force and not (reason or "").strip():
        raise _fail(UsageError("--force needs --reason: say why the gate is overridden",
                               hint=f'adapterflow promote {name} {version} --force --reason "..."'))
    client = _client()
    try:
        target = model_version(client, name, version)
        number = str(target.version)
        if number == _champion(client, name):
            output.print(f"{name} version {number} is already champion", highlight=False)
            return
        verdict = promotion_verdict(client, name, target)
    except PolicyUnreadable as error:
        if not force:
            raise _fail(error) from None
        verdict = Verdict(error.decision(), _champion(client, name))
    except AdapterflowError as error:
        raise _fail(error) from None
    decision, champion = verdict.decision, verdict.champion
    for line in decision.reasons:
        output.print(f"  {line}", highlight=False, markup=False)
    was = f"v{champion}" if champion else "unset"
    if not decision.promote and not force:
        output.print(f"[bold yellow]NOT PROMOTED[/]: {decision.reason}", highlight=False)
        output.print(f"champion stays {was}; --force --reason overrides the gate", highlight=False)
        raise typer.Exit(code=1)
    forced_by = None if decision.promote else current_user()
    record = _record(decision.reason, forced_by, reason)[:MAX_CHARS]  # a version tag's column holds 5,000
    moved, now = move_champion_if_unchanged(client, name, champion, promotion_aliases(number, champion), record)
    if not moved:
        raise _fail(AdapterflowError(f"champion of {name} moved to v{now} while the gate read v{champion}: not moved",
                                     hint=f"run adapterflow promote {name} {number} again"))
    client.set_model_version_tag(name, number, TAG_PROMOTION, record)
    client.set_model_version_tag(name, number, TAG_PROMOTION_REASONS, "\n".join(decision.reasons))
    if forced_by:
        at = datetime.now(timezone.utc).isoformat(timespec="seconds")
        for key, value in {"forced_by": forced_by, "forced_reason": (reason or "")[:MAX_CHARS], "forced_at": at}.items():
            client.set_model_version_tag(name, number, f"adapterflow.{key}", str(value))
    output.print(f"[bold green]PROMOTED[/]{f' (forced by {forced_by})' if forced_by else ''}: {name} champion "
                 f"{was} -> v{number}", highlight=False)


def _champion(client: MlflowClient, name: str) -> str | None:
    """The current champion's version; an unknown model is a usage error."""
    from adapterflow.registry.client import alias_version
    from adapterflow.registry.versions import registered_model
    from adapterflow.tracking.run import ALIAS_CHAMPION

    registered_model(client, name)
    return alias_version(client, name, ALIAS_CHAMPION)


def rollback(name: NameArg) -> None:
    """Move champion back to the version that held it before (repeat to go further back)."""
    from adapterflow.registry.client import alias_version, apply_rollback, champion_history, current_user
    from adapterflow.registry.history import plan_rollback
    from adapterflow.registry.versions import registered_model
    from adapterflow.tracking.run import ALIAS_CHAMPION

    client = _client()
    try:
        registered_model(client, name)
        plan = plan_rollback(name, champion_history(client, name), alias_version(client, name, ALIAS_CHAMPION))
    except AdapterflowError as error:
        raise _fail(error) from None
    apply_rollback(client, name, plan)
    at = datetime.now(timezone.utc).isoformat(timespec="seconds")
    client.set_model_version_tag(name, plan.from_version, "adapterflow.rolled_back",
                                 f"by {current_user()} at {at}, champion back to v{plan.to_version}")
    output.print(f"[bold]rolled back[/] {name}: champion v{plan.from_version} -> v{plan.to_version}, "
                 f"previous-champion {'v' + plan.previous if plan.previous else 'none'}", highlight=False)


def generate(
    model_uri: Annotated[str, typer.Argument(help="models:/NAME@ALIAS or models:/NAME/VERSION", show_default=False)],
    prompt: Annotated[str, typer.Argument(help="the prompt (a classifier: the text to label)", show_default=False)],
    max_new_tokens: Annotated[int, typer.Option("--max-new-tokens", min=1, help="longest answer in tokens")] = 128,
) -> None:
    """Answer a prompt with a registered version, loaded as serving loads it (the trained system prompt and chat
    template applied)."""
    from adapterflow.registry.versions import model_version, parse_reference

    client = _client()
    try:
        name, number, alias = parse_reference(model_uri)
        model_version(client, name, number, alias)  # a clear message for a wrong name, version or alias
        import mlflow
        import pandas as pd

        from adapterflow.core.logs import quiet_third_party

        quiet_third_party()
        model = mlflow.pyfunc.load_model(f"models:/{name}@{alias}" if alias else f"models:/{name}/{number}")
        if "text" in model.metadata.get_input_schema().input_names():
            labelled = model.predict(pd.DataFrame({"text": [prompt]})).iloc[0]
            output.print(f"{labelled['label']} (score {labelled['score']:.3f})", highlight=False)
            return
        answer = model.predict(pd.DataFrame({"prompt": [prompt]}), params={"max_new_tokens": max_new_tokens})
    except AdapterflowError as error:
        raise _fail(error) from None
    output.print(answer["answer"].iloc[0], highlight=False, markup=False)


def add_registry_commands(app: typer.Typer) -> None:
    """Attach the registry commands to the `adapterflow` app."""
    app.add_typer(models_app, name="models")
    app.command()(promote)
    app.command()(rollback)
    app.command()(generate)
