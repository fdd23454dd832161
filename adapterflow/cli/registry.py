"""Registry commands: `models list|show`, `promote`, `rollback`, `generate` (MLflow is imported when they run)."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console

from adapterflow.core.errors import AdapterflowError, UsageError

if TYPE_CHECKING:
    from mlflow.tracking import MlflowClient

    from adapterflow.registry.promotion import Check

console = Console(stderr=True, soft_wrap=True)
output = Console(soft_wrap=True)
models_app = typer.Typer(no_args_is_help=True, help="Registered models: versions, aliases, metrics, lineage.")

NameArg = Annotated[str, typer.Argument(help="registered model name", show_default=False)]
JsonOption = Annotated[bool, typer.Option(
    "--json", help="print one JSON document on stdout (its schema: README, Registry commands); errors go to stderr")]


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


def _report(result: dict[str, Any], as_json: bool, render: Callable[[Console, dict[str, Any]], None]) -> None:
    """A command's result, secrets scrubbed (a URL's password, a secret variable's value): with --json the one
    JSON document on stdout, otherwise rendered for people."""
    from adapterflow.tracking.redaction import Redactor

    result = Redactor().value(result)
    if as_json:
        typer.echo(json.dumps(result, indent=2))
    else:
        render(output, result)


@models_app.command("list")
def models_list(
    name: NameArg,
    wide: Annotated[bool, typer.Option("--wide", help="add the lineage: base model, dataset, eval set")] = False,
    as_json: JsonOption = False,
) -> None:
    """Every version of a registered model: aliases, age, method and the key eval metrics of its run (one line
    each, 80 columns), --wide adds its lineage."""
    from adapterflow.registry.versions import versions_listing
    from adapterflow.reporting.console import print_unfolded, versions_table

    try:
        listing = versions_listing(_client(), name)
    except AdapterflowError as error:
        raise _fail(error) from None
    _report(listing, as_json, lambda out, result: print_unfolded(out, versions_table(result, wide)))


@models_app.command("show")
def models_show(
    reference: Annotated[str, typer.Argument(help="NAME@ALIAS or NAME/VERSION", show_default=False)],
    as_json: JsonOption = False,
) -> None:
    """Everything about one version: aliases, eval metrics of its run, lineage tags and promotion reasons."""
    from adapterflow.registry.versions import model_version, parse_reference, version_details
    from adapterflow.reporting.console import render_version

    client = _client()
    try:
        name, number, alias = parse_reference(reference)
        details = version_details(client, name, model_version(client, name, number, alias))
    except AdapterflowError as error:
        raise _fail(error) from None
    _report(details, as_json, render_version)


def _record(gate_reason: str, forced_by: str | None, reason: str | None) -> str:
    """What the version's promotion tag and the champion history say about this move."""
    if forced_by:
        return f"forced by {forced_by}: {reason} (the gate: {gate_reason})"
    return gate_reason if not reason else f"{gate_reason}; note: {reason}"


def _promotion(client: MlflowClient, name: str, number: str, champion: str | None, reason: str,
               checks: tuple[Check, ...] = (), promoted: bool = False, forced_by: str | None = None) -> dict[str, Any]:
    """What `promote` did (README, Registry commands): the gate's checks, the reason recorded or refused, and the
    model's aliases afterwards."""
    from dataclasses import asdict

    from adapterflow.registry.versions import model_aliases

    return {"name": name, "version": number, "promoted": promoted, "forced": forced_by is not None,
            "forced_by": forced_by, "reason": reason, "checks": [asdict(check) for check in checks],
            "champion_before": champion, "aliases": model_aliases(client, name)}


def promote(
    name: NameArg,
    version: Annotated[str, typer.Argument(help="version number to make champion", show_default=False)],
    force: Annotated[bool, typer.Option("--force", help="move champion even if the gate refuses")] = False,
    reason: Annotated[str | None, typer.Option("--reason", help="why (required with --force; recorded in tags)")] = None,
    as_json: JsonOption = False,
) -> None:
    """Make a version champion if the promotion gate allows it (exit 1 when it refuses, unless --force)."""
    from adapterflow.registry.client import current_user, move_champion_if_unchanged
    from adapterflow.registry.history import MAX_CHARS
    from adapterflow.registry.promotion import promotion_aliases
    from adapterflow.registry.versions import PolicyUnreadable, Verdict, model_version, promotion_verdict
    from adapterflow.reporting.console import render_promotion
    from adapterflow.tracking.run import TAG_PROMOTION, TAG_PROMOTION_REASONS

    if force and not (reason or "").strip():
        raise _fail(UsageError("--force needs --reason: say why the gate is overridden",
                               hint=f'adapterflow promote {name} {version} --force --reason "..."'))
    client = _client()
    try:
        target = model_version(client, name, version)
        number = str(target.version)
        if number == _champion(client, name):
            _report(_promotion(client, name, number, number, f"version {number} is already champion"), as_json,
                    render_promotion)
            return
        verdict = promotion_verdict(client, name, target)
    except PolicyUnreadable as error:
        if not force:
            raise _fail(error) from None
        verdict = Verdict(error.decision(), _champion(client, name))
    except AdapterflowError as error:
        raise _fail(error) from None
    decision, champion = verdict.decision, verdict.champion
    if not decision.promote and not force:
        _report(_promotion(client, name, number, champion, decision.reason, decision.checks), as_json,
                render_promotion)
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
    promoted = _promotion(client, name, number, champion, record, decision.checks, promoted=True, forced_by=forced_by)
    _report(promoted, as_json, render_promotion)


def _champion(client: MlflowClient, name: str) -> str | None:
    """The current champion's version; an unknown model is a usage error."""
    from adapterflow.registry.client import alias_version
    from adapterflow.registry.versions import registered_model
    from adapterflow.tracking.run import ALIAS_CHAMPION

    registered_model(client, name)
    return alias_version(client, name, ALIAS_CHAMPION)


def rollback(name: NameArg, as_json: JsonOption = False) -> None:
    """Move champion back to the version that held it before (repeat to go further back)."""
    from adapterflow.registry.client import alias_version, apply_rollback, champion_history, current_user
    from adapterflow.registry.history import plan_rollback
    from adapterflow.registry.versions import model_aliases, registered_model
    from adapterflow.reporting.console import render_rollback
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
    _report({"name": name, "champion": plan.to_version, "previous_champion": plan.previous,
             "rolled_back_from": plan.from_version, "aliases": model_aliases(client, name)}, as_json, render_rollback)


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
