"""Defaults benchmark (issue 21, item 5): the README's "Your own data" config, with a time budget and no step
settings, on three domains of different shape, each trained by the real pipeline on this machine.

    .venv/bin/python -m benchmarks.domains [--budget 10m] [--epochs 3] [--domains stdlib-docs,long-technical,...]
        [--max-rows N] [--general-passages N] [--out DIR] [--json PATH]

Domains (benchmarks/domain_data.py): stdlib-docs (the demo's 1,200 rows), long-technical (800 whole sklearn and
scipy docstrings, ~200 words each), short-factual (1,200 one-line answers about pandas: signatures, modules).
Each domain is one `adapterflow run` in a fresh process and a fresh ADAPTERFLOW_HOME (embedded MLflow and
Prefect), so its wall time is what a user would wait. `--epochs` is the upper bound written into the config
(0: leave the schema's default); the budget, early stopping or that bound ends training, and the table says
which. Prints one row per domain and whether each target holds: the train stage within +-10% of the budget,
eval perplexity cut by >= 40% vs the base model, forgetting (general-text perplexity vs base) <= +3%.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

from adapterflow.data.python_docs import write_jsonl
from adapterflow.tracking.run import TAG_STOPPED_EARLY
from benchmarks.domain_data import DOMAINS, domain_rows, words_percentile
from schemas.evaluation import EvaluationConfig
from schemas.training import parse_duration

BUDGET_TOLERANCE, MIN_PERPLEXITY_CUT, MAX_FORGETTING = 0.10, 0.40, 0.03
RUN_METRICS = ("train/planned_steps", "train/kept_step", "train/best_step", "train/validation_share",
               "train/validation_seconds", "train/seconds_per_step", "train/steps", "eval/base/perplexity",
               "eval/candidate/perplexity", "eval/candidate/forgetting")


def own_data_config(domain: str, data_file: Path, budget: str, epochs: float, general_passages: int) -> dict:
    """The README's "Your own data" config for a domain: its shape, a time budget instead of step settings."""
    training: dict = {"time_budget": budget}
    if epochs:
        training["epochs"] = epochs
    return {
        "name": f"domain-{domain}",
        "base_model": "smollm2-135m-instruct",
        "data": {"sources": [{"path": str(data_file)}], "max_quarantine_share": 0.02},
        "method": {"type": "lora", "r": 16, "alpha": 32},
        "tokenize": {"max_length": "auto"},
        "training": training,
        "evaluation": {"general_passages": general_passages},  # the forgetting measure
        "registry": {"promotion": {"metric": "perplexity", "min_improvement": 0.01}},
    }


def build_domain(domain: str, folder: Path, max_rows: int | None) -> tuple[Path, dict]:
    """The domain's JSONL file and its answer lengths."""
    rows = domain_rows(domain, max_rows)
    path = folder / f"{domain}.jsonl"
    write_jsonl(rows, path)
    return path, {"rows": len(rows), "answer_words_p50": words_percentile(rows, 0.5),
                  "answer_words_p95": words_percentile(rows, 0.95)}


def run_pipeline(config: Path, home: Path, log: Path) -> tuple[float, dict]:
    """Wall seconds of one `adapterflow run` in its own home, and its summary; the output goes to `log`."""
    summary = home.parent / "summary.json"
    env = {name: value for name, value in os.environ.items()
           if name not in {"MLFLOW_TRACKING_URI", "PREFECT_API_URL", "PREFECT_HOME"}}
    env |= {"ADAPTERFLOW_HOME": str(home), "HF_HUB_OFFLINE": "1"}
    started = time.perf_counter()
    with open(log, "w") as output:
        done = subprocess.run([sys.executable, "-m", "adapterflow.cli.main", "run", str(config), "--summary-json",
                               str(summary)], env=env, stdout=output, stderr=subprocess.STDOUT)
    seconds = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(f"{config} failed ({done.returncode}), its output in {log}:\n{log.read_text()[-3000:]}")
    return seconds, json.loads(summary.read_text())


def run_metrics(home: Path, run_id: str) -> tuple[dict[str, float], str | None]:
    """The run's metrics named in RUN_METRICS (last values) and its stopped-early tag, from its MLflow store."""
    from mlflow.tracking import MlflowClient

    run = MlflowClient(tracking_uri=f"sqlite:///{home / 'mlflow.db'}").get_run(run_id)
    return {name: run.data.metrics[name] for name in RUN_METRICS if name in run.data.metrics}, \
        run.data.tags.get(TAG_STOPPED_EARLY)


def stop_reason(stopped_early: str | None) -> str:
    if stopped_early is None:
        return "epochs"
    if stopped_early.startswith("time budget"):
        return "budget"
    return "patience"


def measure_domain(domain: str, folder: Path, data_file: Path, lengths: dict, budget: str, epochs: float,
                   general_passages: int) -> dict:
    """Configure and train one domain on its built data; its table row."""
    config = folder / f"{domain}.yaml"
    settings = own_data_config(domain, data_file, budget, epochs, general_passages)
    config.write_text(yaml.safe_dump(settings, sort_keys=False))
    home = folder / domain / "home"
    home.mkdir(parents=True, exist_ok=True)
    wall, summary = run_pipeline(config, home, folder / domain / "run.log")
    metrics, tag = run_metrics(home, summary["mlflow_run_id"])
    budget_s = float(parse_duration(budget))
    train_s = summary["timings"]["train"]
    base, candidate = metrics.get("eval/base/perplexity"), metrics.get("eval/candidate/perplexity")
    share = metrics.get("train/validation_share")
    loop_s = metrics["train/validation_seconds"] / share if share else None  # the budgeted loop alone
    counts = summary["data"]
    return {
        "domain": domain, **lengths, "train_rows": counts["train_rows"], "validation_rows": counts["validation_rows"],
        "eval_rows": counts["eval_rows"], "validation_note": counts.get("validation_note"),
        "budget_s": budget_s, "epochs_bound": epochs or "schema default", "run_wall_s": wall, "train_s": train_s,
        "train_deviation": train_s / budget_s - 1, "loop_s": loop_s,
        "loop_deviation": loop_s / budget_s - 1 if loop_s else None,
        "planned_steps": metrics.get("train/planned_steps"), "steps": metrics.get("train/steps",
                                                                                  summary["training"].get("train/steps")),
        "kept_step": metrics.get("train/kept_step"), "best_step": metrics.get("train/best_step"),
        "stop": stop_reason(summary.get("stopped_early")), "stopped_early": summary.get("stopped_early") or tag,
        "validation_share": share, "seconds_per_step": metrics.get("train/seconds_per_step"),
        "base_perplexity": base, "candidate_perplexity": candidate,
        "perplexity_cut": 1 - candidate / base if base and candidate else None,
        "forgetting": metrics.get("eval/candidate/forgetting"), "outcome": summary["outcome"],
        "promoted": summary["promoted"],
    }


def targets(rows: list[dict]) -> dict[str, bool]:
    """Issue 21's targets, computed from the rows."""
    within = [abs(row["train_deviation"]) <= BUDGET_TOLERANCE for row in rows]
    cuts = [row["perplexity_cut"] is not None and row["perplexity_cut"] >= MIN_PERPLEXITY_CUT for row in rows]
    kept = [row["forgetting"] is not None and row["forgetting"] <= MAX_FORGETTING for row in rows]
    needed = min(2, len(rows))
    return {"every domain's train stage within +-10% of its budget": all(within),
            f">= 40% perplexity cut on at least {needed} of {len(rows)} domains": sum(cuts) >= needed,
            f">= 40% cut with forgetting <= +3% on at least {needed} of {len(rows)} domains":
                sum(cut and ok for cut, ok in zip(cuts, kept, strict=True)) >= needed,
            "forgetting <= +3% on every domain": all(kept)}


def number(value: float | None, digits: int = 0, percent: bool = False) -> str:
    if value is None:
        return "-"
    return f"{100 * value:+.{digits}f}%" if percent else f"{value:.{digits}f}"


def print_table(rows: list[dict]) -> None:
    print(f"{'domain':15} {'words p50/95':>12} {'rows t/v/e':>13} {'budget':>6} {'train s':>8} {'dev':>6} "
          f"{'loop s':>7} {'plan':>5} {'steps':>5} {'kept':>5} {'stop':>8} {'val%':>5} {'base->cand ppl':>16} "
          f"{'cut':>5} {'forget':>7}")
    for row in rows:
        perplexity = f"{number(row['base_perplexity'], 2)}->{number(row['candidate_perplexity'], 2)}"
        print(f"{row['domain']:15} {row['answer_words_p50']:>5}/{row['answer_words_p95']:<6} "
              f"{row['train_rows']:>5}/{row['validation_rows']}/{row['eval_rows']:<3} {row['budget_s']:>6.0f} "
              f"{row['train_s']:>8.1f} {number(row['train_deviation'], 0, True):>6} {number(row['loop_s'], 1):>7} "
              f"{number(row['planned_steps']):>5} {number(row['steps']):>5} {number(row['kept_step']):>5} "
              f"{row['stop']:>8} {number(row['validation_share'] and 100 * row['validation_share']):>5} "
              f"{perplexity:>16} {number(row['perplexity_cut'] and -row['perplexity_cut'], 0, True):>5} "
              f"{number(row['forgetting'], 1, True):>7}")
    for row in rows:
        print(f"  {row['domain']}: {row['stopped_early'] or 'ran to its epochs bound'}; run wall {row['run_wall_s']:.0f} s"
              + (f"; {row['validation_note']}" if row["validation_note"] else ""))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--domains", default=",".join(DOMAINS), help="comma-separated subset of: " + ", ".join(DOMAINS))
    parser.add_argument("--budget", default="10m", help="training.time_budget of every run (e.g. 30s, 10m)")
    parser.add_argument("--epochs", type=float, default=3.0, help="training.epochs, the upper bound (0: the default)")
    parser.add_argument("--max-rows", type=int, default=None, help="cap on rows per domain (a smoke run)")
    parser.add_argument("--general-passages", type=int, default=EvaluationConfig().general_passages,
                        help="general-text passages scored for forgetting (default: the schema's)")
    parser.add_argument("--out", type=Path, default=None, help="work folder (default: a new one under "
                        "$ADAPTERFLOW_HOME or /tmp)")
    parser.add_argument("--json", type=Path, default=None, help="also write the rows and targets here")
    args = parser.parse_args()
    domains = [name.strip() for name in args.domains.split(",") if name.strip()]
    if unknown := [name for name in domains if name not in DOMAINS]:
        parser.error(f"unknown domains {unknown}: choose from {', '.join(DOMAINS)}")
    parse_duration(args.budget)
    parent = Path(os.environ.get("ADAPTERFLOW_HOME", tempfile.gettempdir()))
    parent.mkdir(parents=True, exist_ok=True)
    folder = args.out or Path(tempfile.mkdtemp(prefix="adapterflow-domains-", dir=parent))
    folder.mkdir(parents=True, exist_ok=True)
    print(f"work folder: {folder}")
    rows = []
    for domain in domains:
        data_file, lengths = build_domain(domain, folder, args.max_rows)
        print(f"{domain}: {lengths['rows']} rows, answers p50 {lengths['answer_words_p50']} / p95 "
              f"{lengths['answer_words_p95']} words; training ({args.budget} budget)...", flush=True)
        started = time.perf_counter()
        rows.append(measure_domain(domain, folder, data_file, lengths, args.budget, args.epochs,
                                   args.general_passages))
        print(f"{domain}: run done in {time.perf_counter() - started:.0f} s", flush=True)
    print_table(rows)
    verdicts = targets(rows)
    for target, holds in verdicts.items():
        print(f"{'holds' if holds else 'FAILS'}: {target}")
    if args.json:
        args.json.write_text(json.dumps({"budget": args.budget, "epochs": args.epochs, "max_rows": args.max_rows,
                                         "rows": rows, "targets": verdicts}, indent=2))


if __name__ == "__main__":
    main()
