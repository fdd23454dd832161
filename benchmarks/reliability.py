"""Reliability benchmark: faults injected into real processes on 127.0.0.1, and what survived.

    nice -n 10 .venv/bin/python benchmarks/reliability.py [--quick]

1. a real `mlflow server` (SQLite) stopped for 30 s in the middle of a training run of the flow (tiny model,
   `adapterflow run` in a subprocess) and started again: the run completes, no `train/loss` step is missing,
   and training does not wait for the server: the longest gap between two logged steps (after) beside how long
   one synchronous MLflow call with MLflow's own retries, the way the training loop logged before, is held;
2. broken configs (the hypothesis strategy of tests/schemas/test_fuzz_configs.py, seeded) through the real CLI
   `adapterflow validate`, and fuzzed data lines (seeded) through ingest: no crash, no traceback, counts reconcile;
3. an email planted in a malformed line and secrets in the environment and the config: the whole MLflow store
   (database bytes, every artifact) and the captured logs are scanned for them;
4. the totals: faults injected, survived, data lost;
5. kill -9 of the flow at 5 seeded checkpoint steps, each followed by a re-run of the same config (one chain),
   against an uninterrupted run: adapter bytes equal, 1 MLflow run, 1 version, no step missing or repeated.
`--quick` fuzzes fewer configs and lines and trains less; `--sections 5` runs only the named sections.
Exit code 1 when a target is missed (its logs and stores are then kept and their folder printed)."""

from __future__ import annotations

import os
import sys

# benchmarks/tokenize.py shadows the standard library's `tokenize` for anything that runs from this folder:
# keep the folder off the import path, the repository on it.
_HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:] = [p for p in sys.path if os.path.abspath(p or ".") != _HERE] + [os.path.dirname(_HERE)]

import argparse
import itertools
import platform
import shutil
import statistics
import subprocess
import tempfile
import threading
import time
import traceback
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from benchmarks.reliability_configs import seeded_broken_configs
from benchmarks.reliability_leaks import (
    NEEDLES,
    PLANTED_PROMPT,
    SECRET_ENV,
    occurrences,
    store_bytes,
    write_tickets,
)
from benchmarks.reliability_lines import KEPT, FuzzLine, expected_outcomes, fuzz_lines
from benchmarks.reliability_processes import (
    ASSETS,
    ROOT,
    build_model,
    flow_env,
    mlflow_server,
    poll,
    start_flow,
    tiny_config,
    wait_flow,
    write_config,
)

if TYPE_CHECKING:
    from mlflow.tracking import MlflowClient

SEED = 20261130
OUTAGE_S = 30
# training steps of the outage run (full, quick): the tiny model logs every step, a second or more each here
OUTAGE_STEPS = (40, 20)
RESUME_STEPS = 12  # training steps of the resume runs; a checkpoint after each
STOP_AFTER_STEPS = 5  # steps on the server before it is stopped
STALL_TARGET_S = 5.0  # how much longer than a median step the longest gap between logged steps may be
FLOW_TIMEOUT_S = 900


@dataclass
class Row:
    """One line of the totals table."""

    fault: str
    injected: int
    survived: int
    lost: int


def step_gaps(logged: Iterable[int], expected: Iterable[int]) -> tuple[list[int], list[int]]:
    """The expected steps that were never logged, and the steps logged more than once (each once, sorted)."""
    counts = Counter(logged)
    return sorted(set(expected) - set(counts)), sorted(step for step, count in counts.items() if count > 1)


def step_gaps_s(timestamps_ms: Sequence[int]) -> tuple[float, float]:
    """The longest and the median gap between consecutive logged steps, in seconds (0 with fewer than two)."""
    gaps = sorted(later - earlier for earlier, later in itertools.pairwise(timestamps_ms))
    if not gaps:
        return 0.0, 0.0
    return gaps[-1] / 1000, statistics.median(gaps) / 1000


def validate_verdict(exit_code: int, output: str) -> str:
    """How `adapterflow validate` answered a broken config: refused (exit 2 with a list of problems), accepted,
    unreadable (exit 2 without the list), traceback, or crash (any other exit code)."""
    if "Traceback" in output:
        return "traceback"
    if exit_code == 0:
        return "accepted"
    if exit_code != 2:
        return "crash"
    lines = output.strip().splitlines()
    listed = bool(lines) and "problem" in lines[0] and any(line.lstrip().startswith("- ") for line in lines)
    return "refused" if listed else "unreadable"


def line_outcomes(count: int, kept: Sequence[int], reasons: Mapping[int, str]) -> list[str]:
    """What ingest did with each line 1..count, from the kept rows' line numbers and the quarantined lines'
    reasons: kept, the reason, lost (neither) or twice (kept twice, or kept and quarantined)."""
    kept_times = Counter(kept)
    return ["twice" if kept_times[number] + (number in reasons) > 1 else KEPT if kept_times[number]
            else reasons.get(number, "lost") for number in range(1, count + 1)]


def quarantine_changed(lines: Sequence[FuzzLine], raws: Mapping[int, str]) -> int:
    """Quarantined lines whose kept copy differs from the input line (undecodable bytes shown as \\xNN, a
    trailing CR and blank lines' whitespace dropped): content a user could not get back."""
    return sum(1 for number, raw in raws.items() if lines[number - 1].raw.strip()
               and raw != lines[number - 1].raw.rstrip(b"\r").decode("utf-8", errors="backslashreplace"))


def held_by_mlflow_retries(client: MlflowClient, run_id: str) -> Callable[[], tuple[float, str]]:
    """Start one synchronous log_batch in a thread, with MLflow's own HTTP retries (7, backoff up to 2 minutes), as
    the training loop logged metrics before adapterflow/tracking/metric_sender.py; the function returned waits for
    it and says how long it held its caller and how it ended."""
    from mlflow.entities import Metric

    result: dict[str, tuple[float, str]] = {}

    def call() -> None:
        started = time.perf_counter()
        try:
            client.log_batch(run_id, metrics=[Metric("probe", 1.0, 0, 0)], synchronous=True)
            outcome = "delivered"
        except Exception as error:  # noqa: BLE001 - giving up is an outcome too
            outcome = f"gave up ({type(error).__name__})"
        result["call"] = (time.perf_counter() - started, outcome)

    thread = threading.Thread(target=call, daemon=True)
    thread.start()

    def wait() -> tuple[float, str]:
        thread.join()
        return result["call"]

    return wait


def outage_section(folder: Path, model: Path, steps: int) -> tuple[Row, bool]:
    """1. The MLflow server stopped for OUTAGE_S s while the flow trains, then started again."""
    import requests
    from mlflow.exceptions import MlflowException
    from mlflow.tracking import MlflowClient

    print(f"\n== 1. MLflow server stopped for {OUTAGE_S} s mid-training ==", flush=True)
    config = write_config(folder / "outage.yaml",
                          tiny_config(model, "reliability-outage", training={"max_steps": steps}))
    log = folder / "outage-flow.log"
    with mlflow_server(folder / "outage-server") as server:
        client = MlflowClient(server.uri)
        probe_run = client.create_run(client.create_experiment("reliability-outage-probe")).info.run_id

        def steps_on_server() -> list[int]:
            try:
                experiment = client.get_experiment_by_name("reliability-outage")
                runs = client.search_runs([experiment.experiment_id]) if experiment else []
                return [m.step for run in runs for m in client.get_metric_history(run.info.run_id, "train/loss")]
            except (MlflowException, requests.RequestException):  # briefly busy: ask again
                return []

        started = time.perf_counter()
        flow = start_flow(config, flow_env(folder / "outage-home", server.uri), log)
        reached = poll(lambda: len(steps_on_server()) >= STOP_AFTER_STEPS, flow, FLOW_TIMEOUT_S, every=1.0)
        at_stop = len(steps_on_server())
        server.stop()
        stopped = time.perf_counter()
        held_before = held_by_mlflow_retries(MlflowClient(server.uri), probe_run)
        time.sleep(OUTAGE_S)
        still_training = flow.poll() is None and "train done" not in log.read_text(errors="replace")
        server.start()
        down_s = time.perf_counter() - stopped  # until it answers /health again: the restart takes time too
        exit_code = wait_flow(flow, FLOW_TIMEOUT_S)
        seconds = time.perf_counter() - started
        experiment = client.get_experiment_by_name("reliability-outage")
        runs = client.search_runs([experiment.experiment_id]) if experiment else []
        finished = [run for run in runs if run.info.status == "FINISHED"]
        history = [m for run in runs for m in client.get_metric_history(run.info.run_id, "train/loss")]
        before_s, before_outcome = held_before()
    logged = [m.step for m in history]
    missing, repeated = step_gaps(logged, range(1, steps + 1))
    longest, typical = step_gaps_s([m.timestamp for m in sorted(history, key=lambda m: m.step)])
    output = log.read_text(errors="replace")
    completed = exit_code == 0 and len(runs) == len(finished) == 1
    stalled = longest - typical > STALL_TARGET_S
    print(f"server stopped at {at_stop} of {steps} steps logged (reached {STOP_AFTER_STEPS}: {reached}); "
          f"still training when it came back: {still_training}")
    print(f"flow exit code {exit_code}, MLflow runs {len(runs)} ({len(finished)} finished), wall {seconds:.0f} s; "
          f"outage warned in the log: {'MLflow unreachable' in output} (the server was down {down_s:.0f} s)")
    print(f"stall before: one synchronous log_batch with MLflow's own retries, started as the server stopped, held "
          f"its caller {before_s:.0f} s ({before_outcome}); after: longest gap between two logged steps "
          f"{longest:.1f} s, median {typical:.1f} s (target: at most {STALL_TARGET_S:.0f} s longer)")
    print(f"train/loss steps logged {len(logged)}, expected {steps}, missing {len(missing)} {missing or ''}, "
          f"repeated {len(repeated)} {repeated or ''}")
    print(f"run completed: {completed}")
    if not completed:
        print(output[-3000:])
    ok = completed and reached and not missing and not repeated and not stalled
    return Row(f"MLflow server down {OUTAGE_S} s mid-training", 1, int(ok), len(missing)), ok


def configs_section(folder: Path, count: int) -> tuple[Row, bool]:
    """2a. Broken configs through the real CLI."""
    print(f"\n== 2a. {count} broken configs -> `adapterflow validate` ==", flush=True)
    verdicts: Counter[str] = Counter()
    exit_codes: Counter[int] = Counter()
    mutations: Counter[str] = Counter()
    started = time.perf_counter()
    for index, (text, done) in enumerate(seeded_broken_configs(count, SEED)):
        path = folder / "configs" / f"config-{index:03}.yaml"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        done_run = subprocess.run([sys.executable, "-m", "adapterflow.cli.main", "validate", str(path)], check=False,
                                  cwd=ROOT, capture_output=True, text=True,
                                  env=flow_env(folder / "validate-home", None))
        exit_codes[done_run.returncode] += 1
        verdict = validate_verdict(done_run.returncode, done_run.stdout + done_run.stderr)
        verdicts[verdict] += 1
        mutations.update(done)
        if verdict != "refused":
            print(f"  config {path.name} ({', '.join(done)}): {verdict}\n{(done_run.stdout + done_run.stderr)[-1500:]}")
    print(f"mutations applied: {dict(mutations.most_common())}")
    print(f"exit codes: {dict(sorted(exit_codes.items()))}; {time.perf_counter() - started:.0f} s")
    crashes = sum(n for code, n in exit_codes.items() if code not in (0, 2))
    print(f"refused with a list of problems {verdicts['refused']}, accepted {verdicts['accepted']}, "
          f"unreadable {verdicts['unreadable']}, crashes {crashes}, tracebacks {verdicts['traceback']}")
    return Row("broken configs -> validate", count, verdicts["refused"], 0), verdicts["refused"] == count


def lines_section(folder: Path, count: int) -> tuple[Row, bool]:
    """2b. Fuzzed data lines through ingest."""
    import orjson

    from adapterflow.core.home import Home
    from adapterflow.data.tables import iter_rows
    from schemas.data import FileSource
    from tasks.ingest import ingest_sources

    print(f"\n== 2b. {count:,} fuzzed data lines -> ingest ==", flush=True)
    lines = fuzz_lines(count, SEED)
    path = folder / "fuzz.jsonl"
    path.write_bytes(b"\n".join(line.raw for line in lines) + b"\n")
    kinds = Counter(line.kind for line in lines)
    print(f"lines: {dict(kinds.most_common())}; emails planted in {sum(line.email for line in lines)}; "
          f"{path.stat().st_size / 1e6:.1f} MB")
    started = time.perf_counter()
    try:
        result = ingest_sources([FileSource(path=path, format="alpaca")], Home(folder / "ingest-home"),
                                folder / "ingest-out")
    except Exception:  # noqa: BLE001 - a crash is what this section counts
        print(f"crashes 1, tracebacks 1:\n{traceback.format_exc()}")
        return Row("fuzzed data lines -> ingest", count - kinds["valid"], 0, count), False
    kept = [row["line"] for row in iter_rows(result.table)]
    records = [orjson.loads(item) for item in Path(result.quarantine_path).read_bytes().splitlines() if item]
    outcomes = line_outcomes(count, kept, {record["line"]: record["category"] for record in records})
    changed = quarantine_changed(lines, {record["line"]: record["raw"] for record in records})
    wrong = sum(1 for line, outcome in zip(lines, outcomes) if outcome != line.expected)
    expected = expected_outcomes(lines)
    actual = Counter({KEPT: result.table.rows, **result.quarantine_reasons})
    print(f"{time.perf_counter() - started:.1f} s; crashes 0, tracebacks 0")
    print(f"{'outcome':16} {'expected':>9} {'ingest':>9}")
    for outcome in sorted(set(expected) | set(actual), key=lambda name: (name != KEPT, name)):
        print(f"{outcome:16} {expected[outcome]:9,} {actual[outcome]:9,}")
    reconciled = (result.input_rows == count == result.table.rows + result.quarantined == len(kept) + len(records)
                  and actual == expected and not wrong and not changed)
    lost = outcomes.count("lost")
    print(f"input {result.input_rows:,} = kept {result.table.rows:,} + quarantined {result.quarantined:,}; "
          f"lost {lost}, counted twice {outcomes.count('twice')}, other outcome than expected {wrong}, "
          f"quarantined with content changed {changed}; counts reconcile: {reconciled}")
    faults = [outcome == line.expected for line, outcome in zip(lines, outcomes) if line.kind != "valid"]
    return Row("fuzzed data lines -> ingest", len(faults), sum(faults), lost + changed), reconciled


def leaks_section(folder: Path, model: Path) -> tuple[Row, bool]:
    """3. Planted email and secrets: scan the MLflow store and the logs of one real run."""
    print("\n== 3. planted email and secrets -> one run, the whole MLflow store and the logs scanned ==", flush=True)
    tickets = write_tickets(folder)
    sources = [{"path": str(ASSETS / "alpaca.jsonl")}, {"path": str(ASSETS / "chat.jsonl")},
               {"path": str(tickets), "format": "alpaca"}]
    config = write_config(folder / "leaks.yaml", tiny_config(
        model, "reliability-leaks", sources=sources, tokenize={"max_length": 256, "system_prompt": PLANTED_PROMPT},
        training={"max_steps": 4}))
    log = folder / "leaks-flow.log"
    home = folder / "leaks-home"
    with mlflow_server(folder / "leaks-server") as server:
        exit_code = wait_flow(start_flow(config, flow_env(home, server.uri, SECRET_ENV), log), FLOW_TIMEOUT_S)
    stored = store_bytes(server.database, server.artifacts)
    logs = {"flow output": log.read_bytes(), "mlflow server log": server.log.read_bytes()}
    prefect = {str(path): path.read_bytes() for path in (home / "prefect").glob("*.db*") if path.is_file()}
    quarantine = [content for name, content in stored.items() if name.endswith("quarantine.jsonl")]
    scanned = exit_code == 0 and bool(quarantine) and b"<EMAIL>" in quarantine[0]
    print(f"flow exit code {exit_code}; scanned {len(stored)} store files ({sum(map(len, stored.values())) / 1e6:.1f} MB"
          f", the quarantine artifact among them, redacted: {scanned}) and {len(logs)} logs")
    in_store, in_logs, in_prefect = occurrences(NEEDLES, stored), occurrences(NEEDLES, logs), occurrences(NEEDLES, prefect)
    print(f"{'planted':42} {'store files':>11} {'logs':>5} {'prefect db':>10}")
    for needle in NEEDLES:
        print(f"{needle:42} {len(in_store[needle]):11} {len(in_logs[needle]):5} {len(in_prefect[needle]):10}")
    leaked = [needle for needle in NEEDLES if in_store[needle] or in_logs[needle]]
    print(f"occurrences in the MLflow store and logs: {sum(len(in_store[n]) + len(in_logs[n]) for n in NEEDLES)}"
          + (f" ({', '.join(name for n in leaked for name in in_store[n] + in_logs[n])})" if leaked else ""))
    print("(prefect db: the flow's own Prefect API database, which stores flow parameters; outside the MLflow"
          " store and not part of the target)")
    if exit_code != 0:
        print(log.read_text(errors="replace")[-3000:])
    return Row("planted email + secrets", len(NEEDLES), len(NEEDLES) - len(leaked), 0), scanned and not leaked


def resume_section(folder: Path, model: Path) -> tuple[Row, bool]:
    """5. kill -9 at seeded steps with resume, against an uninterrupted run."""
    from benchmarks.reliability_resume import KILLS, resume_runs

    print(f"\n== 5. kill -9 of training at {KILLS} seeded steps, each followed by a re-run of the same config ==",
          flush=True)
    result = resume_runs(folder, model, RESUME_STEPS, SEED)
    print(f"uninterrupted run: exit code {result['baseline_exit']}, {result['baseline_s']:.0f} s")
    print("killed when the checkpoint of step: " + ", ".join(
        f"{step} ({'killed' if reached else 'not reached'})" for step, reached in result["kills"]))
    runs, versions, logged = result["resumed"]
    missing, repeated = step_gaps(logged, range(1, RESUME_STEPS + 1))
    base_runs, base_versions, _ = result["baseline"]
    same = result["baseline_digest"] == result["resumed_digest"] != "none"
    print(f"final re-run: exit code {result['final_exit']}; MLflow runs {runs} (uninterrupted: {base_runs}), "
          f"model versions {versions} (uninterrupted: {base_versions})")
    print(f"train/loss steps logged {len(logged)}, expected {RESUME_STEPS}, missing {len(missing)} {missing or ''}, "
          f"repeated {len(repeated)} {repeated or ''}")
    print(f"adapter weights sha256 {result['resumed_digest'][:16]} vs uninterrupted {result['baseline_digest'][:16]}:"
          f" {'bitwise equal' if same else 'DIFFERENT'}; {result['seconds']:.0f} s in all")
    killed = sum(reached for _, reached in result["kills"])
    ok = (killed == KILLS and result["final_exit"] == result["baseline_exit"] == 0 and runs == versions == 1
          and not missing and not repeated and same)
    if not ok:
        print((folder / "resume-final.log").read_text(errors="replace")[-3000:])
    return Row(f"kill -9 mid-training, re-run ({KILLS} kills)", KILLS, killed if ok else 0, len(missing)), ok


def print_totals(rows: Sequence[Row]) -> None:
    print("\n== 4. totals ==")
    print(f"{'fault':40} {'injected':>9} {'survived':>9} {'data lost':>10}")
    for row in rows:
        print(f"{row.fault:40} {row.injected:9,} {row.survived:9,} {row.lost:10,}")
    print(f"{'total':40} {sum(r.injected for r in rows):9,} {sum(r.survived for r in rows):9,} "
          f"{sum(r.lost for r in rows):10,}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="20 configs and 1,000 lines instead of 200 and 10,000")
    parser.add_argument("--sections", default="1235", help="which sections to run, e.g. 5 (default: all)")
    args = parser.parse_args()
    configs, lines, steps = (20, 1_000, OUTAGE_STEPS[1]) if args.quick else (200, 10_000, OUTAGE_STEPS[0])
    print(f"reliability benchmark, {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, {platform.node()}, "
          f"seed {SEED}{', quick' if args.quick else ''}, sections {args.sections}")
    started = time.perf_counter()
    folder = Path(tempfile.mkdtemp(prefix="adapterflow-reliability-"))
    model = build_model(folder / "tiny-llama")
    sections = {"1": lambda: [outage_section(folder, model, steps)],
                "2": lambda: [configs_section(folder, configs), lines_section(folder, lines)],
                "3": lambda: [leaks_section(folder, model)], "5": lambda: [resume_section(folder, model)]}
    results = [result for key in args.sections if key in sections for result in sections[key]()]
    print_totals([row for row, _ in results])
    missed = [row.fault for row, ok in results if not ok]
    print(f"\n{time.perf_counter() - started:.0f} s; targets missed: {', '.join(missed) if missed else 'none'}")
    if missed:
        print(f"logs, stores and configs kept in {folder}")
        sys.exit(1)
    shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()
