"""The one prepared GPU check of issue 20: every CUDA measurement in one run, one table, one JSON file.

    python benchmarks/cuda_check.py [--parts throughput qlora packing memory e2e] [--out FILE]
    python benchmarks/cuda_check.py --dry-run     # CPU, tiny models, a few steps: what `make test` runs

Parts (benchmarks/cuda_parts.py), each in a process of its own, each failure an error row of its own:
  throughput  the common recipe (Trainer, padding="max_length", bf16 autocast), adapterflow and TRL's SFTTrainer
              (packing, padding-free, bf16; "trl not installed" without it), LoRA r=16 on all linear layers, same
              examples and steps: real tokens/s, ratios, peak memory, eval loss; on SmolLM2-135M-Instruct and on a
              random-weights model of Qwen2.5-0.5B's shape built from a config (speed, memory and MFU only).
              Targets: >= 2x the recipe, >= 1.3x TRL, MFU >= 35% on the larger model.
  qlora       QLoRA (4-bit NF4) against LoRA on the bf16 base: weights and peak memory, tokens/s, eval loss, and
              the peak of evaluating the QLoRA adapter as evaluate loads it against its training peak.
  packing     packed rows against one example at a time, per attention kernel (eager, sdpa, flex attention,
              flash attention 2 when flash-attn is installed), in bf16: relative loss difference (<= 1e-3).
  memory      the trainer's estimate against torch.cuda.max_memory_allocated at three batch x length settings,
              and with the fused loss (liger-kernel) at the largest when it is installed.
  e2e         `adapterflow run configs/smollm2_lora_cpu.yaml` in a fresh ADAPTERFLOW_HOME: wall time, perplexities.

Sized for about 8 minutes on one H100 (GPU time is lent 15 minutes at a time: a rerun must fit too). No GPU was
lent while it was written, so this is the arithmetic, not a measurement: each part's process starts in about 10 s
(torch, transformers, CUDA), so 6 starts are 1 minute. Throughput: SmolLM2 16 steps x 8 examples and the 0.5B
model 30 x 16 are 33k and 123k tokens a trainer, seconds of GPU work each even at low utilisation; the time goes
to loading (3 x 1 GB for the 0.5B model), flex attention's first compilation (about a minute, cached for the later
parts) and 3 scorings of 64 answers: about 3 minutes. QLoRA: two more SmolLM2 trainings and scorings, 1 minute.
Packing: one model load per kernel and forward passes only, 30 s. Memory: 4 x two steps of SmolLM2 at up to 16 x
1,024 tokens, 40 s. End to end: the demo's 50 steps, evaluation of 3 models on 64 rows and the servers' start, about
2 minutes (it stops at 7). Together about 8 minutes; --parts reruns only what failed.

--dry-run runs every part on CPU with the tiny llama of tests/tiny_model.py (random weights, a tokenizer trained
on the test assets, offline) and a smaller random model from a config, 2 steps of 2 examples, all in this process
(a few seconds); the rows that need a GPU say "skipped: needs CUDA". tests/test_cuda_check.py runs it.
"""

from __future__ import annotations

import os
import sys

# benchmarks/tokenize.py shadows the standard library's `tokenize` for anything that runs from this folder
# (spawned workers inherit the path too): keep the folder off the import path, the repository on it.
_HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:] = [p for p in sys.path if os.path.abspath(p or ".") != _HERE] + [os.path.dirname(_HERE)]

import argparse  # noqa: E402
import json  # noqa: E402
import math  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

from benchmarks.common import in_child, in_process  # noqa: E402
from benchmarks.cuda_parts import PARTS, ModelRun, Setup, row, run_part  # noqa: E402

RESULTS = Path(_HERE) / "results"
# Qwen2.5-0.5B's shape (494M parameters, a 152k vocabulary), random weights: speed, memory and MFU only
LARGER = dict(hidden_size=896, intermediate_size=4864, num_hidden_layers=24, num_attention_heads=14,
              num_key_value_heads=2, vocab_size=151_936, max_position_embeddings=32_768, rope_theta=1e6,
              tie_word_embeddings=True)
DRY_RUN_LARGER = dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
                      num_key_value_heads=2, vocab_size=1024, max_position_embeddings=1024, tie_word_embeddings=True)


def random_model(folder: Path, tokenizer_dir: str, shape: dict, cuda: bool) -> str:
    """A Qwen2 model of `shape` with random bf16 weights and `tokenizer_dir`'s tokenizer, saved to `folder`."""
    import torch
    from transformers import AutoTokenizer, Qwen2Config, Qwen2ForCausalLM

    tokenizer = AutoTokenizer.from_pretrained(tokenizer_dir)
    config = Qwen2Config(**shape, pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.eos_token_id,
                         bos_token_id=tokenizer.bos_token_id, architectures=["Qwen2ForCausalLM"])
    torch.manual_seed(0)
    with torch.device("cuda" if cuda else "cpu"):
        model = Qwen2ForCausalLM(config).to(torch.bfloat16)
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return str(folder)


def prepare(dry_run: bool, work: Path) -> Setup:
    """The models and sizes of a GPU run or of the CPU dry run."""
    from transformers.utils import logging

    logging.disable_progress_bar()  # the weight-loading bars, once per model loaded
    if dry_run:
        from tests.tiny_model import build_tiny_model

        main = str(build_tiny_model(work / "tiny-llama", hidden=64))  # 4-bit blocks need rows of 64
        larger = random_model(work / "tiny-qwen2", main, DRY_RUN_LARGER, cuda=False)
        models = (ModelRun("tiny-llama", main, 2, 2, True), ModelRun("tiny-qwen2 (random)", larger, 2, 2, False))
        # fp32: under bf16 autocast a tiny model's CPU step mostly builds kernels for each new shape (twice the time)
        return Setup(cuda=False, work=str(work), models=models, held_out=4, packed_lengths=(5, 17, 9, 30, 12),
                     memory_sizes=("2x64:sdpa", "4x64:sdpa", "2x128:eager"), precision="fp32")
    from adapterflow.core.devices import select_device, select_precision
    from adapterflow.core.home import Home, configure_environment
    from adapterflow.models.base import materialise_builtin

    configure_environment()
    device = select_device("auto")
    main = str(materialise_builtin("smollm2-135m-instruct", Home.from_env()))
    larger = random_model(work / "qwen2.5-0.5b-shape", main, LARGER, cuda=device.type == "cuda")
    models = (ModelRun("smollm2-135m", main, 16, 8, True),
              ModelRun("qwen2.5-0.5b shape (random)", larger, 30, 16, False))
    return Setup(cuda=device.type == "cuda", work=str(work), models=models, held_out=64,
                 packed_lengths=(37, 412, 96, 230, 18, 301, 150, 64, 275, 120, 389, 45),
                 memory_sizes=("8x512:sdpa", "16x1024:sdpa", "4x2048:eager"),
                 precision=select_precision("auto", device))


def run_check(dry_run: bool, parts: list[str], work: Path) -> list[dict]:
    """Every asked part's rows; a part that fails, or whose process dies, leaves one error row."""
    setup = prepare(dry_run, work)
    rows = []
    for name in parts:
        started = time.perf_counter()
        try:
            rows += (in_process if dry_run else in_child)(run_part, name, setup)
        except Exception as error:  # noqa: BLE001 - e.g. the part's process died: the other parts go on
            rows.append(row(name, "(the whole part)", f"error: {type(error).__name__}: {str(error)[:300]}"))
        print(f"{name}: {time.perf_counter() - started:.0f} s", file=sys.stderr, flush=True)
    return rows


def format_value(value: float | None) -> str:
    if value is None:
        return "-"
    if not math.isfinite(value):
        return str(value)
    magnitude = abs(value)
    if magnitude >= 100:
        return f"{value:,.0f}"
    return f"{value:.3g}" if magnitude >= 1e-3 or value == 0 else f"{value:.1e}"


def table(rows: list[dict]) -> str:
    """One line per row: part, case, status, then its numbers as name value pairs."""
    width = max(len(r["case"]) for r in rows)
    status_width = max(len(r["status"]) for r in rows if not r["status"].startswith("error"))
    lines = [f"{'part':<10} {'case':<{width}} {'status':<{status_width}} numbers"]
    for r in rows:
        numbers = "  ".join(f"{name} {format_value(value)}" for name, value in r["metrics"].items())
        line = f"{r['part']:<10} {r['case']:<{width}} {r['status']:<{status_width}} {numbers}"
        lines.append((line + (f"  ({r['note']})" if r["note"] else "")).rstrip())
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dry-run", action="store_true", help="CPU, tiny models, a few steps, in this process")
    parser.add_argument("--parts", nargs="+", choices=list(PARTS), default=list(PARTS))
    parser.add_argument("--out", type=Path,
                        help="the JSON file (default: benchmarks/results/cuda_check[_dry_run].json)")
    args = parser.parse_args(argv)
    if args.dry_run:
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        os.environ["CUDA_VISIBLE_DEVICES"] = ""  # the dry run is the CPU's, also on a machine with a GPU
    import torch

    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="cuda-check-") as work:
        rows = run_check(args.dry_run, args.parts, Path(work))
    device = torch.cuda.get_device_name() if torch.cuda.is_available() else "cpu"
    print(f"\n{device}, torch {torch.__version__}{', dry run' if args.dry_run else ''}\n")
    print(table(rows))
    out = args.out or RESULTS / f"cuda_check{'_dry_run' if args.dry_run else ''}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"device": device, "torch": torch.__version__, "dry_run": args.dry_run,
                               "seconds": time.perf_counter() - started, "rows": rows}, indent=2) + "\n")
    print(f"\n{out}")
    return rows


if __name__ == "__main__":
    main()
