"""Methods benchmark: every fine-tuning method on the demo data and the packaged SmolLM2-135M-Instruct.

    python benchmarks/methods.py [--steps 8 --batch 8 --methods lora,qlora,...]

Every method trains on the same examples in the same order for the same number of steps (the same token
budget), at its own default learning rate, each in its own process (so peak memory is its own). Prints, per
method: trainable parameters (count and share), peak memory, real tokens/s and the final eval loss on the
same held-out answers next to the untrained base model's (each method must beat it), as one table, and logs
the comparison to MLflow: a parent run with one nested run per method (experiment
"adapterflow-methods-benchmark").
"""

from __future__ import annotations

import os
import sys

# benchmarks/tokenize.py shadows the standard library's `tokenize`: keep this folder off the import path.
_HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:] = [p for p in sys.path if os.path.abspath(p or ".") != _HERE] + [os.path.dirname(_HERE)]

import argparse
import tempfile
from pathlib import Path

from benchmarks.common import in_child

MAX_LENGTH = 256
LORA = {"type": "lora", "r": 16, "alpha": 32}
METHODS = {
    "full": {"type": "full"},
    "freeze (last 4 layers)": {"type": "freeze", "trainable_layers": 4},
    "lora": LORA,
    "lora + rslora": LORA | {"rslora": True},
    "lora + dora": LORA | {"dora": True},
    "lora+ (ratio 16)": LORA | {"loraplus_lr_ratio": 16},
    "lora (pissa init)": LORA | {"init": "pissa"},
    "qlora 4-bit nf4": LORA | {"type": "qlora"},
    "qlora 8-bit": LORA | {"type": "qlora", "bits": 8},
    "adalora": {"type": "adalora"},
    "ia3": {"type": "ia3"},
    "prefix": {"type": "prefix"},
    "prompt": {"type": "prompt"},
    "ptuning": {"type": "ptuning"},
    "bottleneck (houlsby)": {"type": "bottleneck"},
    "bottleneck (pfeiffer)": {"type": "bottleneck", "style": "pfeiffer"},
    "bitfit": {"type": "bitfit"},
}


def prepare(folder: Path, train: int, held_out: int):
    """Tokenize the demo examples once, with adapterflow's tokenize stage."""
    from adapterflow.core.home import Home
    from adapterflow.data.python_docs import build_python_docs
    from adapterflow.data.tables import TableWriter
    from adapterflow.models.base import materialise_builtin, weights_sha256
    from adapterflow.storage.records import BaseModelRef, SplitResult
    from adapterflow.storage.store import Storage
    from schemas.tokenize import TokenizeConfig
    from tasks.tokenize import tokenize_splits

    home = Home.from_env()
    model_dir = materialise_builtin("smollm2-135m-instruct", home)
    base = BaseModelRef(name="smollm2-135m-instruct", path=str(model_dir), sha256=weights_sha256(model_dir, home))
    rows = build_python_docs("stdlib", train + held_out, include_topics=True, seed=0)
    tables = {}
    for name, chunk in (("train", rows[:train]), ("eval", rows[train:])):
        with TableWriter(folder / f"{name}.parquet", "sft") as writer:
            for index, row in enumerate(chunk):
                writer.write({"messages": [{"role": "user", "content": row["instruction"]},
                                           {"role": "assistant", "content": row["output"]}], "source": "bench", "line": index})
            tables[name] = writer.close()
    split = SplitResult(train=tables["train"], eval=tables["eval"], fingerprint=f"bench-{train}-{held_out}",
                        uri=str(folder))
    return base, tokenize_splits(split, base, TokenizeConfig(max_length=MAX_LENGTH), Storage.local(folder / "cache"))


def base_loss(base, tokenized, queue) -> None:
    """The untrained base model's eval loss, packed and padded (prompt-learning methods are scored padded)."""
    import torch

    from adapterflow.core.devices import select_precision
    from adapterflow.evaluation.metrics import response_perplexity
    from adapterflow.methods.build import ModelSpec, load_base
    from adapterflow.models.base import load_tokenizer
    from adapterflow.tokenization.dataset import TokenDataset

    device = torch.device("cpu")
    precision = select_precision("auto", device)
    model = load_base(base.path, ModelSpec(), device)
    dataset = TokenDataset(Path(tokenized.uri) / "eval.parquet")
    pad = load_tokenizer(base.path).pad_token_id
    queue.put({packed: response_perplexity(model, dataset, pad, 16, device, precision, packed=packed)[0]["loss"]
               for packed in (True, False)})


def run_method(options: dict, base, tokenized, steps: int, batch: int, out: str, queue) -> None:
    """Train one method and measure it (in a child process)."""
    import torch
    from pydantic import TypeAdapter

    from adapterflow.core.devices import select_precision
    from adapterflow.core.errors import AdapterflowError
    from adapterflow.evaluation.metrics import response_perplexity
    from adapterflow.methods.artifacts import load_trained
    from adapterflow.models.base import load_tokenizer
    from adapterflow.tokenization.dataset import TokenDataset
    from adapterflow.training.trainer import train_adapter
    from schemas.method import Method
    from schemas.training import TrainingConfig

    method = TypeAdapter(Method).validate_python(options)
    device = torch.device("cpu")
    precision = select_precision("auto", device)
    config = TrainingConfig(max_steps=steps, batch_size=batch, logging_steps=100, warmup_ratio=0.05)
    try:
        outcome = train_adapter(Path(tokenized.uri), base, method, config, device, precision, Path(out),
                                max_length=MAX_LENGTH)
    except AdapterflowError as error:
        queue.put({"error": error.message})
        return
    model = load_trained(outcome.output_dir, base.path, device)
    dataset = TokenDataset(Path(tokenized.uri) / "eval.parquet")
    pad = load_tokenizer(base.path).pad_token_id
    loss = response_perplexity(model, dataset, pad, 16, device, precision, packed=not method.prompt_learning)[0]["loss"]
    queue.put({key: outcome.metrics[key] for key in (
        "train/trainable_parameters", "train/trainable_share", "train/peak_memory_mb", "train/tokens_per_second",
        "train/final_loss", "train/runtime_seconds", "train/learning_rate_peak", "memory/estimate_total_mb")}
        | {"eval/loss": loss, "precision": precision, "packed": not method.prompt_learning})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--held-out", type=int, default=64)
    parser.add_argument("--methods", default=",".join(METHODS), help="comma-separated names from the table")
    args = parser.parse_args()

    import mlflow

    from adapterflow.core.home import configure_environment

    configure_environment()
    chosen = [name.strip() for name in args.methods.split(",")]
    results = {}
    with tempfile.TemporaryDirectory(prefix="bench-methods-") as folder:
        base, tokenized = prepare(Path(folder), args.steps * args.batch, args.held_out)
        base_losses = in_child(base_loss, base, tokenized)
        print(f"base model: {base_losses}", flush=True)
        for index, name in enumerate(chosen):
            results[name] = in_child(run_method, METHODS[name], base, tokenized, args.steps, args.batch,
                                     str(Path(folder) / f"run{index}"))
            if "error" not in results[name]:  # scored against the base model the same way, packed or padded
                results[name]["eval/loss_vs_base"] = results[name]["eval/loss"] - base_losses[results[name]["packed"]]
            print(f"{name}: {results[name]}", flush=True)

    mlflow.set_experiment("adapterflow-methods-benchmark")
    with mlflow.start_run(run_name=f"methods-{args.steps}x{args.batch}"):
        mlflow.log_params({"steps": args.steps, "batch_size": args.batch, "held_out": args.held_out,
                           "max_length": MAX_LENGTH, "base_model": "smollm2-135m-instruct"})
        mlflow.log_metric("eval/base/loss", base_losses[True])
        for name, result in results.items():
            with mlflow.start_run(run_name=name, nested=True):
                mlflow.log_params({"method": name, **({"error": result["error"]} if "error" in result else {})})
                mlflow.log_metrics({key: value for key, value in result.items() if isinstance(value, float)})

    print(f"\n{args.steps} steps x {args.batch} examples of the demo data on SmolLM2-135M-Instruct, each method at its "
          f"default learning rate; eval loss on {args.held_out} held-out answers\n")
    print(f"{'method':<24} {'trainable':>12} {'share':>8} {'peak MB':>8} {'est. MB':>8} {'tok/s':>7} {'lr':>8} "
          f"{'eval loss':>9} {'vs base':>8} {'beats base':>10}")
    print(f"{'base model (untrained)':<24} {'':>12} {'':>8} {'':>8} {'':>8} {'':>7} {'':>8} {base_losses[True]:>9.4f}")
    for name, result in results.items():
        if "error" in result:
            print(f"{name:<24} n/a: {result['error']}")
            continue
        delta = result["eval/loss_vs_base"]
        print(f"{name:<24} {result['train/trainable_parameters']:>12,.0f} {result['train/trainable_share']:>8.3%} "
              f"{result['train/peak_memory_mb']:>8,.0f} {result['memory/estimate_total_mb']:>8,.0f} "
              f"{result['train/tokens_per_second']:>7.0f} {result['train/learning_rate_peak']:>8.0e} "
              f"{result['eval/loss']:>9.4f} {delta:>+8.4f} {'yes' if delta < 0 else 'NO':>10}")
    trained = [result for result in results.values() if "error" not in result]
    print(f"\n{sum(result['eval/loss_vs_base'] < 0 for result in trained)} of {len(trained)} methods that ran beat "
          f"the base model's eval loss ({base_losses[True]:.4f} packed, {base_losses[False]:.4f} padded)")


if __name__ == "__main__":
    main()
