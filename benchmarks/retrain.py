"""Retrain benchmark: a scheduled retrain's no-op when nothing changed, and a warm-started retrain vs one from
scratch when the data changed, on the demo config and the real SmolLM2 model, with a Prefect server up.

    .venv/bin/python -m benchmarks.retrain [--steps 10]

Every run is the CLI (`adapterflow run`) in a fresh process, as a scheduled run on a worker would be, against
a real `prefect server start` (SQLite) on 127.0.0.1 that this script starts and stops by PID (the same one
`adapterflow serve` starts). To keep the
benchmark short, training is cut to --steps steps (the demo trains 50); the no-op doesn't depend on that.
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

from adapterflow.stack.servers import scheduler_server

ROOT = Path(__file__).resolve().parent.parent
DEMO = ROOT / "configs" / "smollm2_lora_cpu.yaml"
CHANGED_DATA = "data.sources.0.max_examples=1400"  # the demo builds 1,200 pairs: 200 more is new data


def run_cli(env: dict[str, str], folder: Path, name: str, *overrides: str) -> tuple[float, dict]:
    """Wall seconds of one `adapterflow run` and its summary."""
    summary = folder / f"{name}.json"
    sets = [item for override in overrides for item in ("--set", override)]
    started = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "adapterflow.cli.main", "run", str(DEMO), *sets, "--summary-json",
                           str(summary)], env=env, capture_output=True, text=True)
    seconds = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(f"{name} failed ({done.returncode}):\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}")
    return seconds, json.loads(summary.read_text())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=10, help="training steps per retrain")
    args = parser.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="adapterflow-retrain-"))
    with scheduler_server(folder / "prefect", folder / "prefect-server.log") as api_url:
        env = {**os.environ, "PREFECT_API_URL": api_url, "ADAPTERFLOW_HOME": str(folder / "home"),
               "HF_HUB_OFFLINE": "1"}
        steps = f"training.max_steps={args.steps}"
        rows = []
        seconds, first = run_cli(env, folder, "first", steps)
        rows.append(("first run (trains, registers)", seconds, first))
        for attempt in (1, 2, 3):
            seconds, noop = run_cli(env, folder, f"noop{attempt}", steps)
            assert noop["outcome"] == "skipped: unchanged", noop["outcome"]
            rows.append((f"no-op retrain #{attempt} (unchanged)", seconds, noop))
        seconds, warm = run_cli(env, folder, "warm", steps, CHANGED_DATA, "training.warm_start=champion")
        rows.append(("changed data, warm start from champion", seconds, warm))
        seconds, scratch = run_cli(env, folder, "scratch", steps, CHANGED_DATA)
        rows.append(("changed data, from scratch", seconds, scratch))
    print(f"{'run':44} {'wall s':>8} {'outcome':>20} {'eval ppl':>9} {'version':>8}")
    for name, seconds, summary in rows:
        perplexity = summary["metrics"].get("candidate", {}).get("perplexity")
        print(f"{name:44} {seconds:8.1f} {summary['outcome']:>20} "
              f"{perplexity if perplexity is None else round(perplexity, 3)!s:>9} {summary['model_version']!s:>8}")
    noops = [seconds for name, seconds, _ in rows if name.startswith("no-op")]
    print(f"no-op retrain: best {min(noops):.1f} s, worst {max(noops):.1f} s (target: at most 15 s)")
    print(f"warm start / from scratch wall time: {rows[-2][1] / rows[-1][1]:.2f}")


if __name__ == "__main__":
    main()
