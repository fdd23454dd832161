"""The `adapterflow` command line."""

from __future__ import annotations

import importlib
import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from adapterflow.core.errors import AdapterflowError, ConfigError, UsageError
from adapterflow.core.home import configure_environment, uses_embedded_mlflow

app = typer.Typer(add_completion=False, no_args_is_help=True, help="Declarative fine-tuning of domain adapters.")
console = Console(stderr=True, soft_wrap=True)  # errors and progress; paths must not be wrapped
output = Console(soft_wrap=True)  # the run summary, on stdout

ConfigArg = Annotated[Path, typer.Argument(help="pipeline config (YAML)", show_default=False)]
SetOption = Annotated[list[str], typer.Option("--set", help="override a config field: dotted.key=value (repeatable)")]


def _fail(error: AdapterflowError) -> typer.Exit:
    from adapterflow.reporting.console import render_error

    render_error(console, error)
    return typer.Exit(code=error.exit_code)


def _load(config: Path, overrides: list[str]):
    from schemas import load_config, parse_overrides

    return load_config(config, parse_overrides(overrides))


@app.command()
def validate(config: ConfigArg, overrides: SetOption = []) -> None:  # noqa: B006 - typer needs a list default
    """Check a config and report every problem at once (exit code 2 when there are any)."""
    try:
        loaded = _load(config, overrides)
    except ConfigError as error:
        raise _fail(error) from None
    searched = f", a sweep over {', '.join(loaded.sweep.parameters)}" if loaded.sweep else ""
    output.print(f"[green]ok[/] {config}: {loaded.name}, method {loaded.method.type} on {loaded.base_model.name}, "
                  f"{len(loaded.data.sources)} data source(s){searched}", highlight=False)


SummaryOption = Annotated[Path | None, typer.Option("--summary-json", help="write the run summary here")]


def _write_summary(path: Path | None, summary: dict) -> None:
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(summary, indent=2))


def _run_flow(flow_name: str, config: Path, overrides: list[str], summary_json: Path | None, module: str = "finetune",
              **flow_options: object) -> tuple[dict, str]:
    """Validate the config, run a flow of flows/<module>.py on it, write the summary; user errors end the command,
    not a traceback. A module's `check_config(config)`, if it has one, runs before the flow does."""
    home = configure_environment()
    try:
        loaded = _load(config, overrides)
    except ConfigError as error:
        raise _fail(error) from None
    from adapterflow.core.logs import hide_user_error_tracebacks, quiet_third_party

    quiet_third_party()
    flow_module = importlib.import_module(f"flows.{module}")
    try:
        getattr(flow_module, "check_config", lambda _: None)(loaded)
    except AdapterflowError as error:
        raise _fail(error) from None
    hide_user_error_tracebacks()
    try:
        summary = getattr(flow_module, flow_name)(loaded, **flow_options)
    except AdapterflowError as error:
        console.print(f"[bold red]run failed[/] ({type(error).__name__})")
        raise _fail(error) from None
    _write_summary(summary_json, summary)
    ui_command = "adapterflow ui" if uses_embedded_mlflow(home) else f"open {os.environ['MLFLOW_TRACKING_URI']}"
    return summary, ui_command


@app.command()
def run(config: ConfigArg, overrides: SetOption = [], summary_json: SummaryOption = None) -> None:  # noqa: B006
    """Run the whole pipeline: data, training, evaluation, registration and the promotion gate."""
    from adapterflow.reporting.console import render_summary

    summary, ui_command = _run_flow("finetune", config, overrides, summary_json)
    render_summary(output, summary, ui_command)


TrialsOption = Annotated[int | None, typer.Option("--trials", min=1, help="trials to run (default: sweep.trials)")]
RegisterOption = Annotated[bool, typer.Option(
    "--register", help="then train, evaluate, register and gate the best config like `adapterflow run`")]
BestConfigOption = Annotated[Path | None, typer.Option("--best-config", help="also write the best config here")]


@app.command()
def sweep(config: ConfigArg, trials: TrialsOption = None, overrides: SetOption = [],  # noqa: B006
          register: RegisterOption = False, best_config: BestConfigOption = None,
          summary_json: SummaryOption = None) -> None:
    """Search hyperparameters over the config's sweep section with Optuna (one nested MLflow run per trial,
    pruned on eval loss) and write the best trial's config; with --register, run it like `adapterflow run`."""
    from adapterflow.reporting.console import render_summary, render_sweep

    summary, ui_command = _run_flow("sweep", config, overrides, None, module="sweep", trials=trials)
    if best_config is not None:
        best_config.parent.mkdir(parents=True, exist_ok=True)
        best_config.write_text(Path(summary["best_config"]).read_text())
    render_sweep(output, summary, ui_command, best_config)
    _write_summary(summary_json, summary)  # the sweep's, before a registration that may fail
    if register:  # the best config as a run of its own: trained (from the store), evaluated, registered, gated
        summary["finetune"], _ = _run_flow("finetune", Path(summary["best_config"]), [], None)
        render_summary(output, summary["finetune"], ui_command)
        _write_summary(summary_json, summary)


from adapterflow.cli.stack import stack_app  # noqa: E402 - the commands' own imports stay lazy

app.add_typer(stack_app, name="stack")

from adapterflow.cli.registry import add_registry_commands  # noqa: E402

add_registry_commands(app)

data_app = typer.Typer(no_args_is_help=True, help="Data quality without training.")
app.add_typer(data_app, name="data")


@data_app.command("check")
def data_check(config: ConfigArg, overrides: SetOption = [], summary_json: SummaryOption = None) -> None:  # noqa: B006
    """Run the data stages only and write the data report (exit 1 when a validation gate fails)."""
    from adapterflow.reporting.console import render_data_check

    summary, ui_command = _run_flow("data_check", config, overrides, summary_json)
    render_data_check(output, summary, ui_command)


eval_set_app = typer.Typer(no_args_is_help=True, help="The frozen eval set each registered model is evaluated on.")
app.add_typer(eval_set_app, name="eval-set")


@eval_set_app.command("refresh")
def eval_set_refresh(config: ConfigArg, overrides: SetOption = [], summary_json: SummaryOption = None) -> None:  # noqa: B006
    """Freeze a new eval set from the current data (a data check with data.split.eval_set=refresh); later runs
    evaluate, and compare with the champion, on it."""
    from mlflow.tracking import MlflowClient

    from adapterflow.evaluation.eval_sets import TAG_EVAL_SET
    from adapterflow.reporting.console import render_data_check

    summary, ui_command = _run_flow("data_check", config, [*overrides, "data.split.eval_set=refresh"], summary_json)
    render_data_check(output, summary, ui_command)
    eval_set = MlflowClient().get_run(summary["mlflow_run_id"]).data.tags[TAG_EVAL_SET]
    output.print(f"new frozen eval set {eval_set}: the next run of this model retrains and evaluates on it")


CronOption = Annotated[str | None, typer.Option("--cron", help="cron schedule, e.g. '0 3 * * 1' (Mondays 03:00)")]
TimezoneOption = Annotated[str, typer.Option("--timezone", help="time zone of the cron schedule (IANA name)")]


def _schedule_problem(cron: str | None, timezone: str) -> AdapterflowError | None:
    """A readable usage error for a cron expression or time zone Prefect would refuse."""
    if cron is None:
        return None
    from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

    from prefect.schedules import Cron

    try:
        ZoneInfo(timezone)
    except (ZoneInfoNotFoundError, ValueError):
        return UsageError(f"--timezone {timezone!r} is not a known time zone",
                          hint="use an IANA name, e.g. Europe/Berlin")

    try:
        Cron(cron, timezone=timezone)
    except ValueError as exc:
        return UsageError(f"--cron {cron!r} --timezone {timezone!r}: {exc}".split("\n")[0],
                          hint="five fields: minute hour day-of-month month day-of-week, e.g. '0 3 * * 1'")
    return None


def _load_scheduled(config: Path, overrides: list[str], cron: str | None, timezone: str):  # noqa: ANN202
    """The config of a scheduled pipeline, with its schedule checked; problems end the command with exit code 2."""
    try:
        loaded = _load(config, overrides)
    except ConfigError as error:
        raise _fail(error) from None
    if (problem := _schedule_problem(cron, timezone)) is not None:
        raise _fail(problem)
    return loaded


PrefectYamlOption = Annotated[Path | None, typer.Option(
    "--prefect-yaml", help="write the deployments to this prefect.yaml instead of creating them")]


@app.command()
def deploy(config: ConfigArg, overrides: SetOption = [], cron: CronOption = None,  # noqa: B006
           timezone: TimezoneOption = "UTC", prefect_yaml: PrefectYamlOption = None) -> None:
    """Create or update the config's deployments on the Prefect server in PREFECT_API_URL (idempotent)."""
    configure_environment()
    loaded = _load_scheduled(config, overrides, cron, timezone)
    if prefect_yaml is not None:
        from adapterflow.cli.deploy import deployment_specs
        from adapterflow.cli.deploy import prefect_yaml as render

        command = " ".join(["adapterflow deploy", str(config), *(f"--set {o}" for o in overrides),
                            *([f'--cron "{cron}" --timezone {timezone}'] if cron else [])])
        prefect_yaml.write_text(render(deployment_specs(loaded, cron, timezone), command))
        output.print(f"[green]wrote[/] {prefect_yaml}", highlight=False)
        return
    if not os.environ.get("PREFECT_API_URL"):
        raise _fail(AdapterflowError(
            "deploy needs a Prefect server: PREFECT_API_URL is not set",
            hint="start one (adapterflow stack up, or see infra/README.md) and export its PREFECT_API_URL; "
                 "for a schedule on this machine alone use `adapterflow schedule`"))
    from httpx import HTTPError
    from prefect.exceptions import PrefectHTTPStatusError

    from adapterflow.cli.deploy import deploy_config

    try:
        deployments = deploy_config(loaded, cron, timezone)
    except (HTTPError, PrefectHTTPStatusError) as exc:
        raise _fail(AdapterflowError(f"the Prefect API at {os.environ['PREFECT_API_URL']} refused or didn't answer: "
                                     f"{exc}".splitlines()[0], hint="check PREFECT_API_URL (adapterflow stack status)"))
    for deployed in deployments:
        output.print(f"[green]deployed[/] {deployed.full_name} on work pool {deployed.work_pool}"
                     + (f", schedule {deployed.cron} ({deployed.timezone})" if deployed.cron else ""), highlight=False)


@app.command()
def schedule(config: ConfigArg, cron: Annotated[str, typer.Option("--cron", help="cron schedule")],
             overrides: SetOption = [], timezone: TimezoneOption = "UTC") -> None:  # noqa: B006
    """Run the pipeline on a cron schedule from this process, without workers (Prefect's serve).

    Prefect's temporary API runs no scheduler, so without PREFECT_API_URL this starts a Prefect server under
    ADAPTERFLOW_HOME/prefect for as long as the schedule runs, and stops it on exit.
    """
    home = configure_environment()
    loaded = _load_scheduled(config, overrides, cron, timezone)
    from contextlib import nullcontext

    from prefect.schedules import Cron
    from prefect.settings import PREFECT_API_URL, temporary_settings

    from adapterflow.core.logs import hide_user_error_tracebacks, quiet_third_party
    from adapterflow.stack.servers import scheduler_server
    from flows.finetune import finetune

    quiet_third_party()
    hide_user_error_tracebacks()
    # SIGTERM (a service manager stopping us) unwinds like Ctrl-C, so the server we started is stopped too
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    given = os.environ.get("PREFECT_API_URL")
    server = nullcontext(given) if given else scheduler_server(home.prefect, home.root / "schedule-prefect-server.log")
    try:
        with server as api_url, temporary_settings({PREFECT_API_URL: api_url}):
            console.print(f"scheduled {loaded.name} on {cron!r} ({timezone}) with the Prefect API at {api_url}")
            finetune.serve(name=loaded.name, schedules=[Cron(cron, timezone=timezone)],
                           parameters={"config": loaded.model_dump(mode="json")}, print_starting_message=False)
    except KeyboardInterrupt:
        console.print("schedule stopped")
    except AdapterflowError as error:
        raise _fail(error) from None


@app.command()
def export(
    model_uri: Annotated[str, typer.Argument(help="models:/NAME/VERSION or models:/NAME@ALIAS", show_default=False)],
    merge: Annotated[Path, typer.Option("--merge", help="folder for the merged standalone model (safetensors)")],
) -> None:
    """Merge a registered adapter into its base and write a standalone model, checking its logits match."""
    configure_environment()
    from adapterflow.core.devices import select_device
    from adapterflow.methods.export import export_merged
    from adapterflow.registry.client import download_model

    try:
        adapter_dir, base_path, _ = download_model(model_uri)
        check = export_merged(adapter_dir, base_path, merge, select_device("auto"))
    except AdapterflowError as error:
        raise _fail(error) from None
    output.print(f"[green]merged[/] {model_uri} -> {merge}: logits match the adapter model's "
                 f"(max |difference| {check.max_abs_diff:.2e}, {check.relative_diff:.2e} of the logit scale "
                 f"{check.max_abs_logit:.2f}; tolerance {check.tolerance:.0e})", highlight=False)
    if check.quantized_kernel_diff is not None:
        output.print(f"  merged into the dequantised base; the quantised model as served differs from it by "
                     f"{check.quantized_kernel_diff:.2e} of the logit scale (bitsandbytes' kernel)", highlight=False)


@app.command()
def ui(
    port: Annotated[int, typer.Option(help="port of the MLflow UI")] = 5000,
    host: Annotated[str, typer.Option(help="interface to listen on")] = "127.0.0.1",
) -> None:
    """Open the MLflow UI on the embedded store (runs, metrics, the model registry)."""
    home = configure_environment()
    if not uses_embedded_mlflow(home):
        console.print(f"MLFLOW_TRACKING_URI is set: open {os.environ['MLFLOW_TRACKING_URI']} instead")
        return
    command = [sys.executable, "-m", "mlflow", "ui", "--backend-store-uri", home.embedded_tracking_uri,
               "--host", host, "--port", str(port), "--workers", "1"]
    console.print(f"MLflow UI on http://{host}:{port} (Ctrl-C to stop)")
    raise typer.Exit(subprocess.call(command))


def main() -> None:
    app()


if __name__ == "__main__":
    main()
