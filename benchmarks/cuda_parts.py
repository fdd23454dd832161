"""The parts of benchmarks/cuda_check.py: each takes the run's Setup and returns its table rows.

A part runs its measurements one after another in one process (on CUDA the peak statistics are reset and the
cache emptied between them, so each peak is its own); cuda_check.py runs each part in a process of its own, so
that one that breaks the CUDA context costs only its own rows. The training and scoring functions are
benchmarks/train_throughput.py's, the memory measurement benchmarks/memory.py's.
"""

from __future__ import annotations

import importlib.util
import json
import math
import os
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from benchmarks.common import in_process
from benchmarks.memory import measure
from benchmarks.train_throughput import adapterflow, eval_loss, examples, recipe, trl_sft

NEEDS_CUDA = "skipped: needs CUDA"
MIB = 2**20


@dataclass(frozen=True)
class ModelRun:
    """A model the throughput part trains: its folder, steps and micro-batch, and whether its weights are real
    (then the adapters are scored on held-out answers; random weights measure speed and memory only)."""

    label: str
    path: str
    steps: int
    batch: int
    real_weights: bool


@dataclass(frozen=True)
class Setup:
    """What every part needs: CUDA or the CPU dry run, the models, sizes and a scratch folder."""

    cuda: bool
    work: str
    models: tuple[ModelRun, ...]  # the first has real weights: the QLoRA, packing and memory parts use it
    held_out: int
    packed_lengths: tuple[int, ...]  # examples packed against one-by-one
    memory_sizes: tuple[str, ...] = ()  # BATCHxLENGTH:KERNEL, measured on CUDA
    e2e_config: str = "configs/smollm2_lora_cpu.yaml"  # relative to the repository
    precision: str = "fp32"  # the training precision: auto's on a GPU, fp32 in the dry run

    @property
    def main_model(self) -> ModelRun:
        return self.models[0]


def row(part: str, case: str, status: str = "ok", note: str = "", **metrics: float | None) -> dict:
    """One line of the table: what was measured, how it went, the numbers."""
    return {"part": part, "case": case, "status": status, "metrics": metrics, "note": note}


def free_memory(setup: Setup) -> None:
    """On CUDA, what the last measurement held goes back to the device before the next one starts (on CPU the
    dry run's peaks are the process's anyway, and a full collection costs a second)."""
    import torch

    from adapterflow.training.trainer import free_accelerator_memory

    if setup.cuda:
        free_accelerator_memory(torch.device("cuda"))


def rate(result: dict) -> float:
    return result["real_tokens"] / result["seconds"]


def throughput(setup: Setup) -> list[dict]:
    """The common recipe, adapterflow and TRL's SFTTrainer on the same examples, LoRA and steps, per model."""
    rows = []
    for model in setup.models:
        train, held_out = examples(model.steps * model.batch, setup.held_out)
        results = {}
        runs = {"recipe": (recipe, setup.precision), "adapterflow": (adapterflow, "auto", "lora", setup.precision),
                "trl": (trl_sft, setup.precision)}
        for name, (target, *options) in runs.items():
            if name == "trl" and importlib.util.find_spec("trl") is None:
                continue
            out = Path(setup.work) / "throughput" / model.label / name
            out.mkdir(parents=True)
            result = in_process(target, model.path, train, model.steps, model.batch, str(out), *options)
            if model.real_weights:
                free_memory(setup)
                scored = in_process(eval_loss, model.path, result["adapter"], held_out)
                result["eval_loss"] = scored["loss"]
            results[name] = result
            free_memory(setup)
        ours = rate(results["adapterflow"])
        for name, label in (("recipe", f"recipe: Trainer, pad to 256, {setup.precision}"),
                            ("adapterflow", "adapterflow: packed, response-only loss"),
                            ("trl", f"TRL SFTTrainer: packing, padding-free, {setup.precision}")):
            case = f"{model.label}: {label}"
            if name not in results:
                rows.append(row("throughput", case, "trl not installed"))
                continue
            result = results[name]
            ratios = {f"x_{other}": ours / rate(results[other]) for other in ("recipe", "trl")
                      if name == "adapterflow" and other in results}
            scored = {"eval_loss": result["eval_loss"]} if model.real_weights else {}
            rows.append(row("throughput", case, tok_s=rate(result), peak_mb=result["peak_mb"],
                            padding=result["padding_share"], **scored, **ratios,
                            **({"mfu": result["mfu"]} if name == "adapterflow" and setup.cuda else {}),
                            note="targets: >= 2x recipe, >= 1.3x TRL, MFU >= 35% on the larger model"
                            if name == "adapterflow" else ""))
    return rows


def qlora(setup: Setup) -> list[dict]:
    """QLoRA (4-bit NF4 base) against LoRA on the base in the compute dtype: memory, speed, eval loss, and
    whether evaluating the QLoRA adapter (its base in 4-bit, as evaluate loads it) fits where training did."""
    model = setup.main_model
    train, held_out = examples(model.steps * model.batch, setup.held_out)
    results = {}
    for method in ("lora", "qlora"):
        out = Path(setup.work) / "qlora" / method
        out.mkdir(parents=True)
        result = in_process(adapterflow, model.path, train, model.steps, model.batch, str(out), "auto", method,
                            setup.precision)
        free_memory(setup)
        scored = in_process(eval_loss, model.path, result["adapter"], held_out)
        results[method] = result | {"eval_loss": scored["loss"], "eval_peak_mb": scored["peak_mb"]}
        free_memory(setup)
    lora, quantised = results["lora"], results["qlora"]
    rows = [row("qlora", f"{model.label}: {label}", tok_s=rate(result), peak_mb=result["peak_mb"],
                weights_mb=result["weights_mb"], eval_loss=result["eval_loss"], eval_peak_mb=result["eval_peak_mb"])
            for label, result in ((f"LoRA, frozen base {lora['frozen_dtype'].removeprefix('torch.')}", lora),
                                  ("QLoRA, 4-bit NF4 base", quantised))]
    rows.append(row("qlora", f"{model.label}: QLoRA / LoRA", weights_ratio=quantised["weights_mb"] / lora["weights_mb"],
                    peak_ratio=quantised["peak_mb"] / lora["peak_mb"],
                    eval_loss_change=quantised["eval_loss"] / lora["eval_loss"] - 1,
                    eval_over_train_peak=quantised["eval_peak_mb"] / quantised["peak_mb"],
                    note="targets: weights <= 0.4x, eval loss within 2%, evaluation peak <= training peak"))
    return rows


def kernels_to_check(setup: Setup) -> dict[str, str | None]:
    """Attention kernels to compare packed against one-by-one, each with why it is skipped (None: it runs)."""
    from adapterflow.core.devices import flex_attention_compiles
    from adapterflow.training.trainer import supports_flex_attention

    flex = None if flex_attention_compiles() and supports_flex_attention(setup.main_model.path) else \
        "flex attention unavailable (no Triton, or the model lacks it)"
    flash = None if importlib.util.find_spec("flash_attn") else "flash-attn not installed"
    if not setup.cuda:  # flex has no CPU backward and compiles every shape (minutes); flash is CUDA only
        flex = flash = NEEDS_CUDA
    return {"eager": None, "sdpa": None, "flex_attention": flex, "flash_attention_2": flash}


def packed_against_one_by_one(setup: Setup) -> list[dict]:
    """The loss of packed rows against each example alone, per attention kernel, in the compute dtype (flash
    attention in a single row: transformers separates packed examples for it only there)."""
    import numpy as np
    import torch
    from transformers import AutoModelForCausalLM

    from adapterflow.models.base import load_tokenizer
    from adapterflow.tokenization.packing import PackedCollator, next_token_loss

    device = torch.device("cuda" if setup.cuda else "cpu")
    dtype = torch.bfloat16 if setup.precision == "bf16" else torch.float32
    generator = np.random.default_rng(0)
    batch = []
    for length in setup.packed_lengths:
        ids = generator.integers(10, len(load_tokenizer(setup.main_model.path)), length)
        labels = ids.copy()
        labels[: length // 3] = -100  # a prompt without labels
        batch.append({"input_ids": ids, "labels": labels})
    rows = []
    for kernel, skipped in kernels_to_check(setup).items():
        case = f"{setup.main_model.label}: {kernel}"
        if skipped:
            rows.append(row("packing", case, skipped))
            continue
        model = AutoModelForCausalLM.from_pretrained(setup.main_model.path, dtype=dtype,
                                                     attn_implementation=kernel).to(device).eval()
        capacity = sum(setup.packed_lengths) if kernel == "flash_attention_2" else 2 * max(setup.packed_lengths)
        packed = {name: tensor.to(device) for name, tensor in PackedCollator(0, capacity)(batch).items()}
        with torch.no_grad():
            packed_sum, count = next_token_loss(model, packed, reduction="sum")
            alone = sum(float(next_token_loss(model, {name: torch.tensor(values)[None].to(device)
                                                      for name, values in example.items()}, reduction="sum")[0])
                        for example in batch)
        rows.append(row("packing", case, rows_packed=float(packed["input_ids"].shape[0]),
                        packed_loss=float(packed_sum) / count, alone_loss=alone / count,
                        relative_difference=abs(float(packed_sum) - alone) / alone, note="target <= 1e-3"))
        del model
        free_memory(setup)
    return rows


def memory_estimate(setup: Setup) -> list[dict]:
    """The trainer's memory estimate against torch.cuda.max_memory_allocated above the loaded model (two LoRA
    steps, benchmarks/memory.py), and the fused loss at the largest size when liger-kernel is installed."""
    sizes = [(size, False) for size in setup.memory_sizes]
    fused_size = max(setup.memory_sizes, key=lambda size: math.prod(int(n) for n in size.partition(":")[0].split("x")))
    liger = importlib.util.find_spec("liger_kernel") is not None
    if not setup.cuda:
        return [row("memory", f"{setup.main_model.label}: {size}", NEEDS_CUDA) for size in setup.memory_sizes] + [
            row("memory", f"{setup.main_model.label}: {fused_size}, fused loss", NEEDS_CUDA)]
    sizes += [(fused_size, True)] if liger else []
    rows, losses = [], {}
    for size, fused in sizes:
        shape, _, attention = size.partition(":")
        batch, max_length = (int(part) for part in shape.split("x"))
        result = in_process(measure, setup.main_model.path, batch, max_length, attention, setup.precision, "cuda",
                            fused)
        free_memory(setup)
        losses[size, fused] = result["loss"]
        extra = {"loss_vs_projected": result["loss"] / losses[size, False] - 1} if fused else {}
        rows.append(row("memory", f"{setup.main_model.label}: {size}" + (", fused loss" if fused else ""),
                        estimate_mb=result["estimate"] / MIB, measured_mb=result["measured"] / MIB,
                        ratio=result["estimate"] / result["measured"], **extra))
    if not liger:
        rows.append(row("memory", f"{setup.main_model.label}: {fused_size}, fused loss", "liger-kernel not installed"))
    return rows


def end_to_end(setup: Setup) -> list[dict]:
    """`adapterflow run` of the demo config on this GPU in a fresh ADAPTERFLOW_HOME: wall time and perplexities."""
    case = f"adapterflow run {setup.e2e_config}"
    if not setup.cuda:
        return [row("e2e", case, NEEDS_CUDA)]
    home = Path(setup.work) / "e2e-home"
    summary_path = home / "summary.json"
    servers = ("MLFLOW_TRACKING_URI", "PREFECT_HOME", "PREFECT_API_URL")  # the embedded ones, under the fresh home
    env = {name: value for name, value in os.environ.items() if name not in servers}
    started = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "adapterflow.cli.main", "run", setup.e2e_config, "--summary-json",
                           str(summary_path), "--set", "execution.device=cuda"],
                          env=env | {"ADAPTERFLOW_HOME": str(home)}, cwd=Path(__file__).parents[1],
                          capture_output=True, text=True, timeout=420)
    seconds = time.perf_counter() - started
    if done.returncode != 0:
        output = (done.stderr or done.stdout)[-300:]
        return [row("e2e", case, f"error: exit {done.returncode}: {output}", seconds=seconds)]
    summary = json.loads(summary_path.read_text())
    metrics = summary["metrics"]
    return [row("e2e", case, seconds=seconds, train_seconds=summary["timings"].get("train"),
                base_perplexity=metrics.get("eval/base/perplexity"),
                candidate_perplexity=metrics.get("eval/candidate/perplexity"), note=f"outcome {summary['outcome']}")]


PARTS: dict[str, Callable[[Setup], list[dict]]] = {
    "throughput": throughput,
    "qlora": qlora,
    "packing": packed_against_one_by_one,
    "memory": memory_estimate,
    "e2e": end_to_end,
}


def run_part(name: str, setup: Setup, queue) -> None:  # noqa: ANN001
    """A part's rows, or one error row when it fails (for cuda_check.py's child processes)."""
    try:
        queue.put(PARTS[name](setup))
    except Exception as error:  # noqa: BLE001 - one broken part must not lose the others' results
        queue.put([row(name, "(the whole part)", f"error: {type(error).__name__}: {str(error)[:300]}")])
