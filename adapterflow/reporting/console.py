"""Render a run summary and errors for people, with rich."""

from __future__ import annotations

from typing import Any

from rich.console import Console
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
    table.add_row("[dim]counts reconcile[/]", "yes" if data["reconciled"] else "[red]NO[/]")
    return table


def render_data_warnings(console: Console, data: dict[str, Any]) -> None:
    """What the data stages warned about and a person should read before trusting the run's numbers."""
    if data.get("eval_warning"):
        console.print(f"[bold yellow]warning[/]: {data['eval_warning']}", highlight=False)


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


def metrics_table(metrics: dict[str, dict[str, float]]) -> Table:
    """Base, champion and candidate side by side, a row per metric (ten metrics fit an 80-column terminal this way):
    perplexity, loss, generation scores and forgetting, or accuracy, macro-F1 and loss."""
    from adapterflow.evaluation.metrics import EVAL_METRICS

    rows = [metric for metric in EVAL_METRICS if metric in metrics["candidate"]]
    title = "label tokens" if "perplexity" in rows else "classification"
    models = [name for name in ("base", "champion", "candidate") if name in metrics]
    table = Table(title=f"Evaluation (eval split, {title})", header_style="bold")
    table.add_column("metric")
    for name in models:
        table.add_column(name, justify="right")
    for metric in rows:
        table.add_row(metric, *(f"{metrics[name][metric]:.4g}" if metric in metrics[name] else "-" for name in models))
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
