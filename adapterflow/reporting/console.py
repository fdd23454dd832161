"""Render a run summary, the registry commands' results and errors for people, with rich."""

from __future__ import annotations

import time
from datetime import datetime
from typing import Any

from rich import box
from rich.console import Console
from rich.measure import Measurement
from rich.segment import Segments
from rich.table import Table

from adapterflow.core.errors import AdapterflowError, ConfigError


def render_error(console: Console, error: AdapterflowError) -> None:
    if isinstance(error, ConfigError):
        console.print(f"[bold red]config error[/] {error.source}: {len(error.problems)} problem(s)")
        for problem in error.problems:
            console.print(f"  [red]-[/] [bold]{problem.path}[/]: {problem.message}"
                          + (f" [dim](got {problem.value!r})[/]" if problem.value is not None else ""), highlight=False)
            if problem.hint:
                console.print(f"      [dim]hint: {problem.hint}[/]", highlight=False)
        return
    console.print(f"[bold red]error:[/] {error.message}", highlight=False)
    if error.hint:
        console.print(f"[dim]hint: {error.hint}[/]", highlight=False)


def data_table(data: dict[str, Any]) -> Table:
    table = Table(title="Data", show_header=True, header_style="bold")
    table.add_column("stage / reason")
    table.add_column("rows", justify="right")
    table.add_row("input rows", str(data["input_rows"]))
    table.add_row("quarantined (malformed)", str(data["quarantined"]))
    for reason, count in sorted(data["quarantine_reasons"].items()):
        table.add_row(f"  [dim]{reason}[/]", str(count))
    for reason, count in sorted(data["dropped"].items()):
        table.add_row(f"dropped: {reason}", str(count))
    pii = data["pii"]
    found = ", ".join(f"{kind} {count}" for kind, count in sorted(pii["by_type"].items())) or "none"
    table.add_row(f"personal data ({pii['action']})", f"{pii['rows']} rows")
    table.add_row(f"  [dim]{found}[/]", "")
    table.add_row("near duplicates removed", str(data["near_duplicates"]))
    table.add_row("eval rows leaked from train (removed)", str(data["leaked_eval_rows"]))
    table.add_row("train rows", str(data["train_rows"]))
    table.add_row("eval rows", str(data["eval_rows"]))
    table.add_row("validation rows (from train)", str(data.get("validation_rows", 0)))
    table.add_row("[dim]counts reconcile[/]", "yes" if data["reconciled"] else "[red]NO[/]")
    return table


def render_data_warnings(console: Console, data: dict[str, Any]) -> None:
    """What the data stages warned about and a person should read before trusting the run's numbers."""
    if data.get("eval_warning"):
        console.print(f"[bold yellow]warning[/]: {data['eval_warning']}", highlight=False)
    if data.get("validation_note"):
        console.print(f"[bold yellow]note[/]: {data['validation_note']}", highlight=False)


def render_data_check(console: Console, summary: dict[str, Any], ui_command: str) -> None:
    report = summary["report"]
    console.print()
    console.print(data_table(summary["data"]))
    render_data_warnings(console, summary["data"])
    for cluster in report["near_duplicate_clusters"][:3]:
        console.print(f"  near-duplicate cluster: kept {cluster['kept']}, removed {len(cluster['removed'])} "
                      f"(Jaccard {min(cluster['jaccard']):.2f}-{max(cluster['jaccard']):.2f})", highlight=False)
    for leak in report["leak_examples"][:3]:
        console.print(f"  leaked eval row {leak['eval']} ~ train {leak['train']} ({leak['kind']}, {leak['jaccard']})",
                      highlight=False)
    tokens = report["token_checks"]
    console.print(f"[bold]Validation[/]: {report['validation']['expectations']} row expectations passed; token checks "
                  f"passed ({100 * tokens['truncated_share']:.1f}% truncated, "
                  f"{100 * tokens['end_of_turn_share']:.1f}% train on end-of-turn)", highlight=False)
    console.print(f"Data report: {summary['run_dir']}/data/report.json (histograms: data/lengths.png); "
                  f"MLflow run {summary['mlflow_run_id']}: {ui_command}", highlight=False)


def metrics_table(metrics: dict[str, dict[str, float]], title: str | None = None,
                  number_format: str = ".4g") -> Table:
    """Models side by side (base, the majority-class baseline, champion, candidate), a row per metric (ten metrics
    fit an 80-column terminal this way): perplexity, loss, generation scores and forgetting, or accuracy, macro-F1
    and loss; a metric a model lacks shows as '-'."""
    from adapterflow.evaluation.metrics import EVAL_METRICS
    from adapterflow.registry.promotion import MAJORITY

    found = {metric for values in metrics.values() for metric in values}
    rows = [metric for metric in EVAL_METRICS if metric in found] + sorted(found - set(EVAL_METRICS))
    kind = "label tokens" if "perplexity" in rows else "classification"
    models = [name for name in ("base", MAJORITY, "champion", "candidate") if name in metrics]
    table = Table(title=title or f"Evaluation (eval split, {kind})", header_style="bold")
    table.add_column("metric")
    for name in models:
        table.add_column(name, justify="right")
    for metric in rows:
        table.add_row(metric, *(format(metrics[name][metric], number_format) if metric in metrics[name] else "-"
                                for name in models))
    return table


def render_summary(console: Console, summary: dict[str, Any], ui_command: str) -> None:
    console.print()
    if summary["outcome"] != "trained":
        console.print(f"[bold]Nothing to do[/] for {summary['registered_model']}: {summary['reason']}", highlight=False)
        aliases = ", ".join(f"{alias} -> v{version}" for alias, version in sorted(summary["aliases"].items()))
        console.print(f"  no new version; aliases: {aliases or 'none'}", highlight=False)
        console.print(f"MLflow run {summary['mlflow_run_id']} (tagged adapterflow.skipped=unchanged); "
                      f"browse it with: [bold]{ui_command}[/]")
        return
    console.print(data_table(summary["data"]))
    render_data_warnings(console, summary["data"])
    console.print(metrics_table(summary["metrics"]))
    training = summary["training"]
    console.print(
        f"[bold]Training[/]: {summary.get('method', 'lora')}, {training['train/trainable_parameters']:,.0f} trainable "
        f"parameters ({100 * training['train/trainable_share']:.2f}%), final loss {training['train/final_loss']:.4f}, "
        f"{training['train/tokens_per_second']:.0f} real tokens/s, {100 * training['train/padding_share']:.1f}% padding"
        + (" [dim](adapter reused from cache)[/]" if "train" in summary["skipped"] else ""),
        highlight=False,
    )
    if "train/best_step" in training:
        console.print(
            f"  {training['train/steps']:.0f} steps, weights of step {training['train/kept_step']:.0f} kept (best "
            f"val/loss {training['val/best_loss']:.4f} at step {training['train/best_step']:.0f}); stopped "
            f"{summary.get('stopped_early') or 'at its end (epochs or max_steps)'}", highlight=False)
    verdict = "[bold green]PROMOTED[/]" if summary["promoted"] else "[bold yellow]NOT PROMOTED[/]"
    console.print(f"[bold]Registry[/]: {summary['registered_model']} version {summary['model_version']} {verdict}"
                  + (" [dim](identical adapter: no new version registered)[/]"
                     if summary.get("identical_to_existing") else ""))
    console.print(f"  {summary['promotion_reason']}", highlight=False)
    for line in summary.get("promotion_reasons", []):  # every check of the gate
        console.print(f"    {line}", highlight=False, markup=False)
    aliases = ", ".join(f"{alias} -> v{version}" for alias, version in sorted(summary["aliases"].items()))
    console.print(f"  aliases: {aliases}", highlight=False)
    timings = ", ".join(f"{name} {seconds:.1f}s" for name, seconds in summary["timings"].items())
    console.print(f"[dim]timings: {timings}[/]", highlight=False)
    if summary["skipped"]:
        console.print(f"[dim]served from cache: {', '.join(summary['skipped'])}[/]", highlight=False)
    console.print(f"Data report: {summary['data_report']}", highlight=False)
    console.print(f"MLflow run {summary['mlflow_run_id']}; browse it with: [bold]{ui_command}[/]")


def trials_table(trials: list[dict[str, Any]], best: int) -> Table:
    """Each trial's drawn values, how it ended and its eval loss; the best one marked."""
    table = Table(title="Trials", show_header=True, header_style="bold")
    names = list(trials[0]["values"]) if trials else []
    leaves = [name.rsplit(".", 1)[-1] for name in names]
    if len(set(leaves)) == len(leaves):  # `learning_rate`, not `training.lea…` in 80 columns
        names = leaves
    for column in ["#", *names, "state", "eval loss", "step"]:
        table.add_column(column, justify="left" if column == "state" else "right")
    for trial in trials:
        values = [f"{value:.3g}" if isinstance(value, float) else str(value) for value in trial["values"].values()]
        loss = f"{trial['loss']:.4f}" if trial["loss"] is not None else "-"
        marker = " *" if trial["number"] == best else ""
        table.add_row(f"{trial['number']}{marker}", *values, trial["state"], loss, str(trial["step"] or "-"))
    return table


def render_sweep(console: Console, summary: dict[str, Any], ui_command: str, copied_to: Any = None) -> None:
    best = summary["best"]
    console.print()
    console.print(trials_table(summary["trials"], best["number"]))
    console.print(f"[bold]Best[/]: trial {best['number']}, eval loss {best['loss']:.4f} at step {best['step']}",
                  highlight=False)
    console.print(f"Best config: {summary['best_config']}" + (f" (copied to {copied_to})" if copied_to else ""),
                  highlight=False)
    console.print(f"MLflow run {summary['mlflow_run_id']} with one nested run per trial; browse it with: "
                  f"[bold]{ui_command}[/]")


# `models list --wide`: its lineage columns and the keys of a version's `lineage` they show
LINEAGE_COLUMNS = {"base model": "base_model", "data": "dataset_fingerprint", "eval set": "eval_set"}


def age(created_ms: int, now_s: float) -> str:
    """How long ago a version was made, in the largest unit that fits: '40 s', '5 min', '3 h', '12 d'."""
    seconds = max(0, int(now_s - created_ms / 1000))
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if seconds >= size:
            return f"{seconds // size} {unit}"
    return f"{seconds} s"


def _age_of(created: str) -> str:
    return age(int(datetime.fromisoformat(created).timestamp() * 1000), time.time())


def _short(value: str | None) -> str:
    if not value:
        return "-"
    return value[:12] if len(value) == 64 else value  # hashes shortened; names kept whole


UNBOUNDED = 10_000  # columns: wide enough to measure any table at its natural width


def print_unfolded(console: Console, table: Table) -> None:
    """Print a table with every row on one line, never folding a cell: within the console's width when it fits,
    wider when it doesn't (a terminal then wraps the long lines, a pipe keeps them whole for grep)."""
    natural = Measurement.get(console, console.options.update_width(UNBOUNDED), table).maximum
    console.print(Segments(console.render(table, console.options.update_width(max(console.width, natural)))),
                  crop=False)


def versions_table(listing: dict[str, Any], wide: bool = False) -> Table:
    """`models list`: a row per version with its aliases, age, method and the task's key metrics (fits 80 columns);
    `wide` adds the lineage (base model, dataset fingerprint, eval set)."""
    from adapterflow.registry.versions import KEY_METRICS

    versions = listing["versions"]
    metrics = KEY_METRICS["classification" if any("macro_f1" in v["metrics"] for v in versions) else "sft"]
    lineage = LINEAGE_COLUMNS if wide else {}
    table = Table(title=f"{listing['name']}: {len(versions)} version(s)", title_justify="left", header_style="bold",
                  box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False)
    for column in ("version", "aliases", "age", "method", *metrics, *lineage):
        table.add_column(column, justify="right" if column in metrics else "left", no_wrap=True)
    for version in versions:
        table.add_row(version["version"], ", ".join(version["aliases"]) or "-", _age_of(version["created"]),
                      version["method"] or "-",
                      *(f"{version['metrics'][key]:.4f}" if key in version["metrics"] else "-" for key in metrics),
                      *(_short(version["lineage"][key]) for key in lineage.values()))
    return table


def render_version(console: Console, details: dict[str, Any]) -> None:
    """`models show`: the version's aliases, when and from which run it came, its run's eval metrics and its tags
    (lineage and promotion) as `key: value` lines."""
    console.print(f"[bold]{details['name']}[/] version {details['version']}  aliases: "
                  f"{', '.join(details['aliases']) or 'none'}", highlight=False)
    console.print(f"created {details['created']} ({_age_of(details['created'])} ago), MLflow run "
                  f"{details['run_id']}, source {details['source']}", highlight=False)
    if details["metrics"]:
        print_unfolded(console, metrics_table(details["metrics"], title="Eval metrics of its run", number_format=".4f"))
    console.print("[bold]Tags: lineage and promotion[/]")
    for key, value in sorted(details["tags"].items()):
        if not key.startswith("eval."):  # the metrics table shows them
            console.print(f"  {key}: " + value.replace("\n", "\n    "), highlight=False, markup=False)


def render_promotion(console: Console, result: dict[str, Any]) -> None:
    """`promote`: every check of the gate, then what became of champion."""
    from adapterflow.registry.promotion import Check

    for check in result["checks"]:
        console.print(f"  {Check(**check).line}", highlight=False, markup=False)
    name, number, before = result["name"], result["version"], result["champion_before"]
    was = f"v{before}" if before else "unset"
    if result["promoted"]:
        forced = f" (forced by {result['forced_by']})" if result["forced"] else ""
        console.print(f"[bold green]PROMOTED[/]{forced}: {name} champion {was} -> v{number}", highlight=False)
    elif before == number:
        console.print(f"{name} version {number} is already champion", highlight=False)
    else:
        reason = result["reason"].removeprefix("not promoted: ")  # the verdict is already in capitals
        console.print(f"[bold yellow]NOT PROMOTED[/]: {reason}", highlight=False)
        console.print(f"champion stays {was}; --force --reason overrides the gate", highlight=False)


def render_rollback(console: Console, result: dict[str, Any]) -> None:
    previous = f"v{result['previous_champion']}" if result["previous_champion"] else "none"
    console.print(f"[bold]rolled back[/] {result['name']}: champion v{result['rolled_back_from']} -> "
                  f"v{result['champion']}, previous-champion {previous}", highlight=False)
