"""`adapterflow stack up|down|status`: the local server stack under ADAPTERFLOW_HOME/stack."""

from __future__ import annotations

import sys
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from adapterflow.core.errors import AdapterflowError
from adapterflow.core.home import Home
from adapterflow.reporting.console import render_error
from adapterflow.stack.environment import MLFLOW_LOGIN_VARS, export_lines
from adapterflow.stack.settings import DEFAULT_BUCKET, DEFAULT_POOLS, PoolSettings, StackSettings
from adapterflow.stack.stack import Stack

stack_app = typer.Typer(
    no_args_is_help=True,
    help="A local shared-server stack without Docker: Postgres, an S3 store, MLflow and Prefect servers, workers.",
)
console = Console(stderr=True, soft_wrap=True)

PortOption = Annotated[int, typer.Option(min=0, max=65535, help="0 picks a free port")]
PoolOption = Annotated[list[str], typer.Option(help="work pool NAME or NAME:LIMIT, one worker each (repeatable)")]


def _pools(specs: list[str]) -> dict[str, PoolSettings]:
    """`NAME` or `NAME:LIMIT` (a concurrency limit) per pool."""
    pools = {}
    for spec in specs:
        name, _, limit = spec.partition(":")
        if not name or (limit and not limit.isdigit()):
            raise typer.BadParameter(f"{spec!r}: expected NAME or NAME:LIMIT, e.g. cuda:1", param_hint="--pool")
        pools[name] = PoolSettings(concurrency_limit=int(limit) if limit else None)
    return pools


@stack_app.command()
def up(
    s3_port: PortOption = 8333,
    mlflow_port: PortOption = 5001,
    prefect_port: PortOption = 4200,
    bucket: Annotated[str, typer.Option(help="bucket for MLflow artifacts and the data cache")] = DEFAULT_BUCKET,
    pool: PoolOption = list(DEFAULT_POOLS),  # noqa: B006 - typer needs a list default
    timeout: Annotated[float, typer.Option(min=1, help="seconds each component may take to start")] = 240.0,
    mlflow_auth: Annotated[bool, typer.Option(
        help="MLflow's basic-auth app: clients log in with the exported MLFLOW_TRACKING_USERNAME/PASSWORD")] = True,
) -> None:
    """Start the stack (or find it running) and print its client environment: eval "$(adapterflow stack up)"."""
    settings = StackSettings(s3_port=s3_port, mlflow_port=mlflow_port, prefect_port=prefect_port, bucket=bucket,
                             pools=_pools(pool), start_timeout=timeout, mlflow_auth=mlflow_auth)
    stack = Stack(Home.from_env().stack, settings)
    try:
        with console.status(f"starting the stack under {stack.layout.root} (a first start takes about a minute)"):
            env = stack.up()
    except AdapterflowError as error:
        render_error(console, error)
        raise typer.Exit(code=1) from None
    sys.stdout.write(export_lines(env))
    for component in stack.status():
        mark = "[green]ok[/]" if component.healthy else "[red]not healthy[/]"
        console.print(f"{mark} {component.name:<12} {component.url}", highlight=False)
    prefect_ui = env["PREFECT_API_URL"].removesuffix("/api")
    console.print(f"UIs: MLflow {env['MLFLOW_TRACKING_URI']}, Prefect {prefect_ui}", highlight=False)
    user_var, password_var = MLFLOW_LOGIN_VARS
    if user_var in env:
        console.print(f"MLflow asks for a login: user {env[user_var]}, password ${password_var}", highlight=False)
    console.print(f"[dim]logs: {stack.layout.logs}; stop with `adapterflow stack down`[/]", highlight=False)


@stack_app.command()
def down() -> None:
    """Stop every process of the stack (the data stays for the next `up`)."""
    stack = Stack(Home.from_env().stack)
    stack.down()
    console.print(f"stopped the stack under {stack.layout.root}", highlight=False)


@stack_app.command()
def status() -> None:
    """Each component's PID, whether it runs and answers; exit code 1 unless all are healthy."""
    stack = Stack(Home.from_env().stack)
    components = stack.status()
    if not components:
        console.print(f"no stack under {stack.layout.root}; start one with `adapterflow stack up`", highlight=False)
        raise typer.Exit(code=1)
    table = Table(title=f"stack under {stack.layout.root}", header_style="bold")
    for column in ("component", "pid", "running", "healthy"):
        table.add_column(column)
    table.add_column("url", overflow="fold")
    for component in components:
        table.add_row(component.name, str(component.pid or "-"), _mark(component.alive), _mark(component.healthy),
                      component.url)
    Console(soft_wrap=True).print(table)
    if not all(component.healthy for component in components):
        raise typer.Exit(code=1)


def _mark(value: bool) -> str:
    return "[green]yes[/]" if value else "[red]no[/]"
