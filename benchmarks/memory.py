"""The pre-flight memory estimate against the measured peak of real training steps on CPU.

    python benchmarks/memory.py [--sizes 1x256:eager 4x1024:sdpa ...] [--precision auto] [--live]

For each size (a micro-batch of N examples of L tokens, the worst case of tokenize.max_length L) and attention
kernel: two training steps of LoRA (r=16, all linear layers) on the packaged SmolLM2-135M-Instruct, packed as
the trainer packs (rows of up to 2 x L tokens), in a fresh process. Measured: the peak resident memory of the
steps above the process with the model and optimizer loaded and its weights paged in (VmHWM, reset through /proc/self/clear_refs, minus VmRSS
then): what the operating system has to find for training, allocator overhead and the libraries' lazy state
included. The CPU
allocator keeps no peak statistics of its own to compare. Compared with the part of the estimate the loaded
model does not already hold (gradients, optimizer state, activations; the trainer adds the weights to the free
memory likewise), as the trainer computes it for CPU.

--live repeats each size with glibc's dynamic mmap threshold off (MALLOC_MMAP_THRESHOLD_), so that freed
blocks go back to the system at once and the peak is close to that of the live tensors alone: the estimate
without its CPU heap allowance is checked against that column.

On CUDA (benchmarks/cuda_check.py) `measure` compares the estimate without heap allowance, as the trainer makes it
there, with torch.cuda.max_memory_allocated above the loaded model, optionally with the fused loss.
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

from benchmarks.attention import lora_model, packed_batch, reset_peak, resident_kib, training_step
from benchmarks.common import in_child

MIB = 2**20
DEFAULT_SIZES = ["1x256:eager", "4x256:eager", "8x256:eager", "2x1024:eager", "2x1024:sdpa", "4x1024:sdpa"]


def measure(model_dir: str, batch: int, max_length: int, attention: str, precision: str, device: str, fused: bool,
            queue) -> None:
    """Two steps of `batch` full-length examples on `device` in this fresh process (with `fused`, the fused loss):
    the estimates and the measured peak above the loaded model, in bytes (CPU: resident, CUDA: allocated), and
    the first step's loss."""
    import torch

    from adapterflow.methods.memory import CPU_HEAP_RETENTION, estimate_memory
    from adapterflow.methods.memory_plan import SCORE_KEEPING_KERNELS
    from adapterflow.training.trainer import PACK_ROWS_OF

    torch.manual_seed(0)
    row = PACK_ROWS_OF * max_length
    cuda = device == "cuda"
    model = lora_model(model_dir, attention, precision, max_length, device)
    estimates = {
        name: estimate_memory(model, tokens_per_micro_batch=batch * max_length, sequence_length=row,
                              precision=precision, gradient_checkpointing=False, optimizer="adamw_torch_fused",
                              full_backward=True, attention_scores=attention in SCORE_KEEPING_KERNELS,
                              heap_retention=retention, fused_loss=fused)
        for name, retention in (("estimate", 0.0 if cuda else CPU_HEAP_RETENTION), ("live_estimate", 0.0))
    }
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4, fused=True)
    batch_rows = packed_batch(batch, max_length, row, model.config.vocab_size)
    with torch.no_grad():  # page in the weights (safetensors maps them lazily): the loaded model is the baseline
        for parameter in model.parameters():
            parameter.sum()
    gc.collect()
    if cuda:
        baseline = torch.cuda.memory_allocated()
        torch.cuda.reset_peak_memory_stats()
    else:
        baseline = resident_kib("VmRSS") * 1024
        reset_peak()
    # the second step finds the optimizer state and the first step's freed blocks
    losses = [float(training_step(model, batch_rows, optimizer, precision, fused=fused)) for _ in range(2)]
    peak = torch.cuda.max_memory_allocated() if cuda else resident_kib("VmHWM") * 1024
    queue.put({name: value.total - value.weights for name, value in estimates.items()}
              | {"measured": peak - baseline, "loss": losses[0],
                 "rows": int(batch_rows["input_ids"].shape[0]), "width": int(batch_rows["input_ids"].shape[1])})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", nargs="+", default=DEFAULT_SIZES, help="BATCHxLENGTH:KERNEL")
    parser.add_argument("--precision", default="auto", choices=["auto", "bf16", "fp32"])
    parser.add_argument("--live", action="store_true", help="also measure with glibc's dynamic mmap threshold off")
    args = parser.parse_args()

    import torch

    from adapterflow.core.devices import select_precision
    from adapterflow.core.home import Home, configure_environment
    from adapterflow.models.base import materialise_builtin

    configure_environment()
    model_dir = str(materialise_builtin("smollm2-135m-instruct", Home.from_env()))
    precision = select_precision(args.precision, torch.device("cpu"))
    print(f"LoRA r=16, two steps of SmolLM2-135M on CPU, {precision}: the estimate (gradients + optimizer + "
          f"activations) against the measured peak above the loaded model, MiB\n")
    header = f"{'batch x max_length':>18} {'kernel':>6} {'rows':>9} {'estimate':>9} {'measured':>9} {'ratio':>6}"
    print(header + (f" {'live est.':>9} {'measured':>9} {'ratio':>6}" if args.live else ""))
    for size in args.sizes:
        shape, _, attention = size.partition(":")
        batch, max_length = (int(part) for part in shape.split("x"))
        attention = attention or "eager"
        result = in_child(measure, model_dir, batch, max_length, attention, precision, "cpu", False)
        line = (f"{shape:>18} {attention:>6} {result['rows']:>4}x{result['width']:<4} {result['estimate'] / MIB:>9,.0f} "
                f"{result['measured'] / MIB:>9,.0f} {result['estimate'] / result['measured']:>6.2f}")
        if args.live:
            os.environ["MALLOC_MMAP_THRESHOLD_"] = str(128 * 1024)  # read by the spawned child's allocator
            try:
                live = in_child(measure, model_dir, batch, max_length, attention, precision, "cpu", False)
            finally:
                del os.environ["MALLOC_MMAP_THRESHOLD_"]
            line += (f" {live['live_estimate'] / MIB:>9,.0f} {live['measured'] / MIB:>9,.0f} "
                     f"{live['live_estimate'] / live['measured']:>6.2f}")
        print(line, flush=True)


if __name__ == "__main__":
    main()
