"""Attention kernels on CPU: eager against sdpa, one LoRA training step, by packed row length.

    python benchmarks/attention.py [--lengths 128 256 512 1024 2048] [--tokens 2048] [--precision auto]

Each step trains LoRA (r=16, all linear layers) of the packaged SmolLM2-135M-Instruct on `--tokens` tokens in
rows of the given length, packed as the trainer packs them: two examples per row, position ids restarting at
each, no attention mask (transformers derives the block-diagonal causal mask from the position ids), the loss
projected at labelled positions, AdamW. The same tokens per step at every length, so times compare per token.
Each (kernel, length) runs in a fresh process: after a small step that initialises the libraries' lazy state,
the first full step's peak resident memory above the loaded model is the step's memory (VmHWM, reset through
/proc/self/clear_refs just before the step, minus VmRSS then), the median of the next steps its time.
On a machine shared with other work, run it with OMP_NUM_THREADS=1 and compare the CPU-time columns: with more
threads, OpenMP's spin-waiting while a thread is descheduled inflates CPU time.
"""

from __future__ import annotations

import os
import sys

# benchmarks/tokenize.py shadows the standard library's `tokenize` for anything that runs from this folder
# (spawned workers inherit the path too): keep the folder off the import path, the repository on it.
_HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:] = [p for p in sys.path if os.path.abspath(p or ".") != _HERE] + [os.path.dirname(_HERE)]

import argparse
import gc
import statistics
import time

from benchmarks.common import in_child

KERNELS = ("eager", "sdpa")


def resident_kib(field: str) -> int:
    """VmRSS (now) or VmHWM (peak since the last reset) of this process, in KiB."""
    with open("/proc/self/status") as status:
        return next(int(line.split()[1]) for line in status if line.startswith(field + ":"))


def reset_peak() -> None:
    """Make VmHWM start again from the current resident size (Linux 4.0+)."""
    with open("/proc/self/clear_refs", "w") as refs:
        refs.write("5")


def lora_model(model_dir: str, attention: str, precision: str, length: int, device: str = "cpu"):
    """SmolLM2 with LoRA r=16 on all linear layers, built the way the training stage builds it on `device`."""
    import torch

    from adapterflow.methods.build import build_trainable, spec_for
    from schemas.method import LoraMethod

    method = LoraMethod(type="lora", r=16, alpha=32, dropout=0.0, target_modules="all-linear")
    spec = spec_for(method, "sft", [], 0, precision, length, device_type=device)
    return build_trainable(method, model_dir, spec, torch.device(device), total_steps=100, attention=attention)


def packed_batch(examples: int, example_length: int, row_tokens: int, vocab: int) -> dict:
    """Random examples packed by the trainer's collator into rows of up to `row_tokens` tokens."""
    import numpy as np

    from adapterflow.tokenization.packing import PackedCollator

    generator = np.random.default_rng(0)
    rows = generator.integers(10, vocab, size=(examples, example_length))
    return PackedCollator(pad_token_id=0, row_tokens=row_tokens)([{"input_ids": ids, "labels": ids} for ids in rows])


def training_step(model, batch: dict, optimizer, precision: str, update: bool = True, fused: bool = False):
    """Forward, backward and (with `update`) optimizer step as the trainer runs them (projected next-token loss,
    or with `fused` Liger-Kernel's fused linear cross-entropy), on the model's device; returns the loss."""
    from adapterflow.core.devices import autocast
    from adapterflow.tokenization.packing import next_token_loss
    from adapterflow.training.fused_loss import fused_next_token_loss

    device = next(model.parameters()).device
    with autocast(device, precision):
        on_device = {name: tensor.to(device) for name, tensor in batch.items()}
        loss, _ = (fused_next_token_loss if fused else next_token_loss)(model, on_device)
    loss.backward()
    if update:
        optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    return loss.detach()


def measure(model_dir: str, attention: str, rows: int, length: int, precision: str, steps: int, queue) -> None:
    """One (kernel, size) in this fresh process: the first step's peak memory, then the median step time."""
    import torch

    torch.manual_seed(0)
    model = lora_model(model_dir, attention, precision, length)
    vocab = model.config.vocab_size
    batch = packed_batch(2 * rows, length // 2, length, vocab)  # two examples a row
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4, fused=True)
    warm_up = packed_batch(2, 16, 32, vocab)
    training_step(model, warm_up, optimizer, precision, update=False)  # lazy library state, not the step's
    gc.collect()
    baseline = resident_kib("VmRSS")
    reset_peak()
    training_step(model, batch, optimizer, precision)
    peak = resident_kib("VmHWM") - baseline
    wall, cpu = [], []
    for _ in range(steps):
        started, started_cpu = time.perf_counter(), time.process_time()
        training_step(model, batch, optimizer, precision)
        wall.append(time.perf_counter() - started)
        cpu.append(time.process_time() - started_cpu)
    queue.put({"seconds": statistics.median(wall), "cpu_seconds": statistics.median(cpu), "peak_mib": peak / 1024,
               "width": int(batch["input_ids"].shape[1])})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--lengths", type=int, nargs="+", default=[128, 256, 512, 1024, 2048])
    parser.add_argument("--tokens", type=int, default=2048, help="tokens per step (a multiple of every length)")
    parser.add_argument("--steps", type=int, default=2, help="timed steps after the measured first one")
    parser.add_argument("--precision", default="auto", choices=["auto", "bf16", "fp32"])
    args = parser.parse_args()

    import torch

    from adapterflow.core.devices import select_precision
    from adapterflow.core.home import Home, configure_environment
    from adapterflow.models.base import materialise_builtin

    configure_environment()
    model_dir = str(materialise_builtin("smollm2-135m-instruct", Home.from_env()))
    precision = select_precision(args.precision, torch.device("cpu"))
    print(f"LoRA r=16 step of SmolLM2-135M on CPU, {precision}, {args.tokens} tokens per step, "
          f"{torch.get_num_threads()} threads\n")
    print("tokens/s of a training step by wall clock, and by the process's CPU time (less sensitive to other work "
          "on the machine); peak MiB: the step's resident memory above the loaded model")
    print(f"{'row length':>10} {'eager tok/s':>11} {'sdpa tok/s':>10} {'sdpa/eager':>10} {'eager cpu':>9} "
          f"{'sdpa cpu':>8} {'sdpa/eager':>10} {'eager MiB':>9} {'sdpa MiB':>9}")
    for length in args.lengths:
        rows = max(1, args.tokens // length)
        result = {kernel: in_child(measure, model_dir, kernel, rows, length, precision, args.steps) for kernel in KERNELS}
        tokens = rows * length
        wall = {kernel: tokens / result[kernel]["seconds"] for kernel in KERNELS}
        cpu = {kernel: tokens / result[kernel]["cpu_seconds"] for kernel in KERNELS}
        print(f"{length:>10} {wall['eager']:>11,.0f} {wall['sdpa']:>10,.0f} {wall['sdpa'] / wall['eager']:>10.2f} "
              f"{cpu['eager']:>9,.0f} {cpu['sdpa']:>8,.0f} {cpu['sdpa'] / cpu['eager']:>10.2f} "
              f"{result['eager']['peak_mib']:>9,.0f} {result['sdpa']['peak_mib']:>9,.0f}", flush=True)

if __name__ == "__main__":
    main()
